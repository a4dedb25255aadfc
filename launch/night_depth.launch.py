"""Launch the DASP depth node (and optionally RViz) for one camera.

    ros2 launch dasp_ros night_depth.launch.py camera_namespace:=/camera compressed:=true rviz:=true

All decisions (remappings, parameters, environment, which nodes, argument checks) are made by
``dasp_ros.launch_spec`` (plain Python, tested); this file only maps them onto launch actions.
``ros2 launch dasp_ros night_depth.launch.py --show-args`` lists the arguments.

Failures end the launch with a non-zero status and nothing left running: a bad argument, a
missing file or a missing rviz2 raise before any process starts, and a depth node that exits
with an error (e.g. a model named in the params file that does not load) raises from its exit
handler; upstream launch turns both into exit status 1 and shuts everything down.
"""

import os

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, OpaqueFunction,
                            RegisterEventHandler, SetEnvironmentVariable)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from dasp_ros import launch_spec


class NodeFailed(RuntimeError):
    """A launched node exited with an error while the launch was running."""


def _on_depth_node_exit(event, context):
    if context.is_shutdown:  # the launch is ending anyway (Ctrl-C): any exit is expected
        return None
    if event.returncode != 0:
        raise NodeFailed(f"{event.action.name} exited with status {event.returncode} "
                         "(its log above says why)")
    return [EmitEvent(event=Shutdown(reason=f"{event.action.name} exited"))]


def _launch_setup(context, *args, **kwargs):
    values = {a.name: LaunchConfiguration(a.name).perform(context)
              for a in launch_spec.ARGUMENTS}
    plan = launch_spec.build_plan(values, env=os.environ)  # raises before anything starts
    actions = [SetEnvironmentVariable(name, value) for name, value in plan.environment.items()]
    nodes = [Node(**node.as_kwargs()) for node in plan.nodes]
    depth = nodes[0]
    actions.append(RegisterEventHandler(OnProcessExit(target_action=depth,
                                                      on_exit=_on_depth_node_exit)))
    return actions + nodes


def generate_launch_description():
    # no `choices=`: launch compares them case-sensitively; launch_spec checks in any case
    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.help())
                for a in launch_spec.ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=_launch_setup)])
