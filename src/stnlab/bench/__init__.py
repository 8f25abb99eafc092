"""The benchmark's parts: the measurements (``measure``), CPU inference (``inference``) and the markdown report
(``report``); ``src/bench.py``'s settings and run are ``stnlab.apps.bench``."""
