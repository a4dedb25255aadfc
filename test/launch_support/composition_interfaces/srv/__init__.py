"""Service types of the stand-in (see the package docstring): present, never usable."""


class _Unavailable:
    """A service type that exists for imports and annotations; using it says why it fails."""

    class Request:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("composition_interfaces is a test stand-in: composable nodes "
                               "cannot be launched here")

    Response = Request


class LoadNode(_Unavailable):
    pass


class UnloadNode(_Unavailable):
    pass


class ListNodes(_Unavailable):
    pass
