"""The plugin and its provider, loaded as qgis_process loads them."""

import os


def test_provider_registered_with_groups_icon_and_version(qgis_app):
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById("fjord")
    assert provider is not None and provider.name() == "Fjord"
    assert provider.versionInfo() == "0.1.0"
    assert os.path.isfile(provider.svgIconPath())
    algs = {a.name(): a for a in provider.algorithms()}
    assert {"rasterizelabels", "checkenvironment"} <= set(algs)
    assert algs["rasterizelabels"].group() == "Prepare" and algs["checkenvironment"].group() == "Setup"
    for alg in algs.values():
        assert alg.shortHelpString() and alg.createInstance().name() == alg.name()
        assert not alg.flags() & alg.FlagHideFromModeler


def test_plugin_loads_and_unloads_cleanly(qgis_app):
    from qgis.core import QgsApplication

    import fjord

    second = fjord.classFactory(None)
    registry = QgsApplication.processingRegistry()
    before = len(registry.providers())
    second.initGui()  # the desktop calls initGui, which must register the provider too
    second.unload()
    assert len(registry.providers()) == before
    assert registry.providerById("fjord") is not None


def test_metadata_is_complete():
    import configparser

    from conftest import REPO
    meta = configparser.ConfigParser()
    meta.read(os.path.join(REPO, "metadata.txt"))
    general = meta["general"]
    assert general["name"] == "Fjord" and general["qgisMinimumVersion"] == "3.22"
    assert general["hasProcessingProvider"] == "yes" and general["license"]
    assert os.path.isfile(os.path.join(REPO, general["icon"]))
