"""The four task modules. Each registers itself with the core when imported (entry points in
pyproject.toml); each folder has the same files for the same roles:

* ``task.py``  config dataclasses + the :class:`attnapps.task.Task` subclass
* ``data.py``  the dataset adapter (embedded default + the generic ``data.path=`` format)
* ``model.py`` the models, built from core layers and the core attention
"""
