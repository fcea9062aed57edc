"""``ray.rllib.utils.annotations``: decorators that document intent (``override`` checks it)."""


def override(parent_cls):
    """Mark a method as overriding one of ``parent_cls``; raises NameError at class creation if it does not."""
    def decorator(method):
        if method.__name__ not in dir(parent_cls):
            raise NameError(f"When using the @override decorator, {method.__name__} must override the respective "
                            f"method (with the same name) of {parent_cls.__name__}!")
        return method
    return decorator


def _marker(obj=None, **kwargs):
    return obj if obj is not None else (lambda inner: inner)


PublicAPI = DeveloperAPI = ExperimentalAPI = OldAPIStack = OverrideToImplementCustomLogic = _marker
OverrideToImplementCustomLogic_CallToSuperRecommended = _marker
