"""The preamble of a process that must run with no compiler and no database: importing the
compile path (the workers' backends, compilers and executors: all of ``tuner.workers`` but the
launcher ``cuda_launch`` and the plain data it imports), the database (``tuner.db``,
SQLAlchemy), Optuna or Ray fails loudly."""

REFUSE_COMPILER_AND_DATABASE = '''
import importlib.abc, sys

LAUNCHER = ("tuner.workers.cuda_launch", "tuner.workers.backend", "tuner.workers.measurement")

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("sqlalchemy", "optuna", "ray") or name.startswith("tuner.db") or (
                name.startswith("tuner.workers.") and name not in LAUNCHER):
            raise ImportError(f"{name} was imported: the bundle run touched the compile path or the database")

sys.meta_path.insert(0, Refuse())
'''
