"""Stand-in for the ``composition_interfaces`` ROS message package (tests only).

``launch_ros`` imports ``composition_interfaces.srv`` when it loads (for composable nodes),
and the message package is not installable outside a ROS distribution. The launch file under
test starts plain ``Node`` actions only, so the stand-in only has to import; using it fails.
"""
