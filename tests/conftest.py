import os

# Selenium Manager must never reach for the network, in tests as in production.
os.environ.setdefault("SE_OFFLINE", "true")
