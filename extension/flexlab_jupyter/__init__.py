"""flexlab in Jupyter: the server extension behind the JupyterLab "Accelerators" panel.

REST under ``/flexlab/api/`` (``openapi.yaml`` beside this file), served by
:class:`~flexlab_jupyter.app.FlexlabJupyter`; the prebuilt labextension ships in
``labextension/`` (npm name ``flexlab-jupyter``).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: The npm name of the labextension (its folder under share/jupyter/labextensions).
LABEXTENSION = "flexlab-jupyter"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": LABEXTENSION}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from flexlab_jupyter.app import FlexlabJupyter

    return [{"module": "flexlab_jupyter", "app": FlexlabJupyter}]
