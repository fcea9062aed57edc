"""Remote functions defined in an ordinary module (workers import it by reference)."""
import mpirt


@mpirt.remote
def module_square(x):
    return x * x


class Unpicklable:
    def __reduce__(self):
        raise TypeError("this object refuses to be pickled")


class CustomError(Exception):
    pass
