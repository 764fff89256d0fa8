import os

# Tests always run in FAST mode, offline; notebooks executed by nbmake inherit this environment.
os.environ.setdefault("COOKBOOK_FAST", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
