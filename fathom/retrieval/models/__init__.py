"""Model specs, ONNX runtimes for serving, and (torch-only) provisioning."""
