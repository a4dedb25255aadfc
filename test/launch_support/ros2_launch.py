"""``ros2 launch PACKAGE FILE [--show-args] [name:=value ...]`` without the ``ros2`` CLI.

Calls the functions of ``ros2launch.api`` that the ``ros2 launch`` verb calls (the ``ros2cli``
front end is not installable here), with the same arguments, and exits with their status.
Run it with the upstream launch stack, the stand-ins of this folder and the installed package
on ``PYTHONPATH`` and the install prefix on ``AMENT_PREFIX_PATH``.
"""

import sys

from ros2launch.api import (get_share_file_path_from_package, launch_a_launch_file,
                            print_arguments_of_launch_file)


def main(argv):
    package, file_name, *rest = argv
    path = get_share_file_path_from_package(package_name=package, file_name=file_name)
    if "--show-args" in rest:
        print_arguments_of_launch_file(launch_file_path=path)
        return 0
    # `ros2 launch` passes noninteractive=True when stdin is not a terminal (CI, systemd)
    return launch_a_launch_file(launch_file_path=path, launch_file_arguments=rest,
                                noninteractive=not sys.stdin.isatty())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
