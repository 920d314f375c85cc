"""Imported first by the entry points that load models: the command line and the HTTP app.

skops, the registry's model format, names every ``scipy.special`` ufunc when it is imported, and
finds each one's module by walking ``sys.modules`` in import order (``skops.io._utils.whichmodule``).
Imported after MLflow, FastAPI and SQLAlchemy (3,300 modules in), that walk took 0.8 s of a
worker's cold start and of every ``future-skills score`` run; with ``scipy.special`` among the
first modules it ends within a few hundred.
"""

import scipy.special  # noqa: F401
