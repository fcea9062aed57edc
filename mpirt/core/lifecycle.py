"""What every explicit lifecycle in mpirt shares: the error a refused transition raises.

Tasks (submitter and worker side), actors (as their caller sees them) and objects (as their table sees
them) each keep one state enum and change it only through one method per transition, which checks the
state it leaves and raises ``IllegalTransition`` otherwise. A leaf, so every lifecycle can import it.
"""


class IllegalTransition(RuntimeError):
    """A record moved from a state it cannot leave that way: a bug in mpirt, never the user's."""


def refuse(what, state, allowed, states):
    """Raise ``IllegalTransition`` for ``what`` (e.g. "task f (1a)") in ``state``, expected one of ``allowed``;
    ``states`` is the enum that names them."""
    raise IllegalTransition(f"{what} is {states(state).name}, not {' or '.join(states(s).name for s in allowed)}")
