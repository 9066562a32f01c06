"""Applications the worker-group tests run under real servers (gunicorn, uvicorn, multiprocessing)."""
