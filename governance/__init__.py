"""governance: the control plane of the model-governance service.

The app factory is `governance.app.create_app`; the composition root `governance.runtime`.
"""

__version__ = "0.1.0"
