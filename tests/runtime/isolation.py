"""The preamble of a process that must run with no compiler and no database: importing the
compile path (``tuner.workers``) or the database (``tuner.db``, SQLAlchemy) fails loudly."""

REFUSE_COMPILER_AND_DATABASE = '''
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "sqlalchemy" or name.startswith(("tuner.workers", "tuner.db")):
            raise ImportError(f"{name} was imported: the bundle run touched the compile path or the database")

sys.meta_path.insert(0, Refuse())
'''
