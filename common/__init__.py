"""Shared logic for make_data.py, train.py and infer.py.

Nothing here needs a process group to be imported or tested: the scripts own the
Accelerator and pass what these functions need.
"""
