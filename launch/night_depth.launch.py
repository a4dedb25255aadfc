"""Launch the DASP depth node (and optionally RViz) for one camera.

    ros2 launch dasp_ros night_depth.launch.py camera_namespace:=/camera compressed:=true rviz:=true

All decisions (remappings, parameters, environment, which nodes) are made by
``dasp_ros.launch_spec`` (plain Python, tested); this file only maps them onto launch_ros
actions. ``ros2 launch dasp_ros night_depth.launch.py --show-args`` lists the arguments.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from dasp_ros import launch_spec


def _launch_setup(context, *args, **kwargs):
    values = {a.name: LaunchConfiguration(a.name).perform(context)
              for a in launch_spec.ARGUMENTS}
    plan = launch_spec.build_plan(values, env=os.environ)
    actions = [SetEnvironmentVariable(name, value) for name, value in plan.environment.items()]
    actions += [Node(**node.as_kwargs()) for node in plan.nodes]
    return actions


def generate_launch_description():
    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      **({"choices": list(a.choices)} if a.choices else {}))
                for a in launch_spec.ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=_launch_setup)])
