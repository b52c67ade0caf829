"""Harness that runs the wfpcallout PE image in speakeasy's emulated Windows kernel."""
