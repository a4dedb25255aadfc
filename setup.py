"""dasp_ros: one ROS 2 (ament_python) package that is also a pip-installable project.

Installs the ROS-free library ``dasp_core`` and the ROS layer ``dasp_ros``, the ament resource
marker, ``launch/`` and ``config/`` into ``share/dasp_ros``, the shipped model, and console
scripts (``depth_node``, ``bag_replay``, ``bag_eval`` for ``ros2 run``; ``dasp`` for everything
else).
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dasp_ros"

RUNTIME = ["numpy>=1.24,<3", "opencv-python-headless==4.12.0.88", "pyyaml>=6", "tqdm>=4.60",
           "onnxruntime==1.23.2", "openvino==2026.4.1", "rosbags==0.11.9", "matplotlib>=3.7",
           "pillow>=9",
           # strict JPEG decoding (corrupt-data warnings as errors), libjpeg-turbo inside
           "simplejpeg==1.9.0"]
TRAIN = ["torch==2.14.1", "torchvision==0.29.1", "onnx==1.19.1", "onnxscript==0.7.2",
         "tensorboard>=2.14"]
ROS = ["ros-rclpy[fastrtps]==9.1.2", "ros-sensor-msgs", "ros-std-msgs", "ros-geometry-msgs",
       "ros-nav-msgs", "ros-diagnostic-msgs", "ros-rosgraph-msgs", "ros-builtin-interfaces"]
# osrf-pycommon and lark: what the upstream launch stack in ../shared/upstream/ros2_launch
# needs from the package index for the tests that run the launch file through it
TEST = ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100", "osrf-pycommon==2.0.2",
        "lark==1.3.1", "pytest-rerunfailures==15.1"]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="DASP nighttime self-supervised monocular depth for ROS 2",
    packages=find_packages(include=["dasp_core", "dasp_core.*", "dasp_ros", "dasp_ros.*"]),
    package_data={"dasp_core": ["assets/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    python_requires=">=3.10",
    install_requires=["setuptools"] + RUNTIME,
    extras_require={"train": TRAIN, "ros": ROS, "test": TEST, "all": TRAIN + ROS + TEST},
    zip_safe=False,
    maintainer="dasp maintainers",
    maintainer_email="dasp@example.org",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "dasp = dasp_core.cli:main",
            "depth_node = dasp_ros.depth_node:main",
            "bag_replay = dasp_ros.bag_replay:main",
            "bag_eval = dasp_ros.bag_eval:main",
        ],
    },
)
