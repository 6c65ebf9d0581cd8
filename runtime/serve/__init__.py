"""``mambalitesr serve``: the student behind a real Triton Inference Server (see serve_cli, pytriton_server)."""
