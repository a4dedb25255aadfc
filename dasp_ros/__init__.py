"""dasp_ros — the ROS 2 layer of dasp: depth node, codecs, point clouds, launch spec, bag tools.

Modules (ROS message classes are imported only where messages are built, so the codecs, the
parameter table and the launch spec also work on rosbags messages and without rclpy):

* ``depth_node``   the node (``ros2 run dasp_ros depth_node``)
* ``params``       every node parameter in one table (+ Markdown for the README)
* ``image_codec``  sensor_msgs/Image and CompressedImage ↔ numpy (instead of cv_bridge)
* ``camera_info``  CameraInfo → intrinsics, resizing, undistorted rays, output CameraInfo
* ``pointcloud``   depth + rays → PointCloud2 and back (instead of sensor_msgs_py)
* ``diagnostics``  counters, rates, latency percentiles → diagnostic_msgs/DiagnosticArray
* ``launch_spec``  what launch/night_depth.launch.py does, as plain tested Python
* ``bag_replay``   rosbag2 → topics
"""
