"""Outputs that load styled: a sidecar .qml beside the file (applied when the layer is
opened, from qgis_process too) and, in the desktop, a post-processor that applies it at once."""

from qgis.core import QgsProcessingLayerPostProcessorInterface

# Post-processors are dropped unless Python keeps a reference to them.
_KEEP = []


class _LoadStyle(QgsProcessingLayerPostProcessorInterface):
    def __init__(self, qml):
        super().__init__()
        self.qml = qml

    def postProcessLayer(self, layer, context, feedback):
        message, ok = layer.loadNamedStyle(self.qml)
        if not ok:
            feedback.reportError(f"Could not apply the style {self.qml}: {message}", False)
        layer.triggerRepaint()


def style_on_load(context, output, qml, name=None):
    """Apply ``qml`` to ``output`` when Processing loads it into the project."""
    if not context.willLoadLayerOnCompletion(output):
        return
    details = context.layerToLoadOnCompletionDetails(output)
    if name:
        details.name = name
    processor = _LoadStyle(qml)
    _KEEP.append(processor)
    del _KEEP[:-50]
    details.setPostProcessor(processor)
