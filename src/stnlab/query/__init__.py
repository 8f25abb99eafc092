"""Query time: classify new images and videos with a trained checkpoint, show the STs, export, serve."""
