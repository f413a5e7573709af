"""A class on JupyterHub: accounts with generated passwords, each student's runs folder, and the
teacher's live overview of every student's run. The hub's configuration is ``../jupyterhub_config.py``."""
