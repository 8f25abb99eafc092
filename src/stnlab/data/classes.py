"""The 43 official GTSRB class names, indexed by ClassId."""

GTSRB_CLASSES = (
    "speed limit 20",
    "speed limit 30",
    "speed limit 50",
    "speed limit 60",
    "speed limit 70",
    "speed limit 80",
    "end of speed limit 80",
    "speed limit 100",
    "speed limit 120",
    "no passing",
    "no passing for vehicles over 3.5t",
    "right-of-way at next intersection",
    "priority road",
    "yield",
    "stop",
    "no vehicles",
    "vehicles over 3.5t prohibited",
    "no entry",
    "general caution",
    "dangerous curve left",
    "dangerous curve right",
    "double curve",
    "bumpy road",
    "slippery road",
    "road narrows on the right",
    "road work",
    "traffic signals",
    "pedestrians",
    "children crossing",
    "bicycles crossing",
    "beware of ice/snow",
    "wild animals crossing",
    "end of all speed and passing limits",
    "turn right ahead",
    "turn left ahead",
    "ahead only",
    "go straight or right",
    "go straight or left",
    "keep right",
    "keep left",
    "roundabout mandatory",
    "end of no passing",
    "end of no passing for vehicles over 3.5t",
)
NUM_CLASSES = len(GTSRB_CLASSES)


def class_names(num_classes: int) -> list[str]:
    """The official GTSRB names for 43 classes, else ``class <id>``."""
    if num_classes == NUM_CLASSES:
        return list(GTSRB_CLASSES)
    return [f"class {i}" for i in range(num_classes)]
