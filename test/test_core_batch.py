"""Batch jobs here and on a Dask LocalCluster: same results, failures isolated, restartable,
a killed worker's job rerun, one merged dated front layer (issue 17)."""

import csv
import filecmp
import os
import shutil
import signal
import threading
import time

import pytest

pytest.importorskip("distributed")
from osgeo import gdal, ogr

from fjord.core.data.dates import parse_date
from fjord.core.errors import FjordError
from fjord.core.glaciers.terminus import read_fronts
from fjord.core.run.batch import batch_csc, read_jobs
from fjord.core.run.scheduler import parse_scheduler

DATES = ("20190217", "20190305", "20190321")
COLUMNS = ["Model", "DataSource", "OutFolder", "ExpShortHand", "Dims", "PatchSize", "TileSize",
           "Patience", "Done", "Method", "Front"]
OPTIONS = dict(samples_per_class=500, max_epochs=2, smoothing=2)


def scene_name(day):
    return f"S2A_MSIL1C_{day}T101031_N0207_R022_T33XWG"


def make_table(folder, glacier, model, unet=None, bad=True):
    """Dated copies of the synthetic scene (with their references) and a job table."""
    os.makedirs(folder / "images", exist_ok=True)
    for day in DATES:
        shutil.copy(glacier["image"], folder / "images" / f"{scene_name(day)}.tif")
        shutil.copy(glacier["classes"], folder / "images" / f"{scene_name(day)}_classes.tif")
    rows = [[model, f"images/{scene_name(DATES[0])}.tif", "out/a", "A", 4, 3, 32, 2, 0, "csc",
             "fronts/a.gpkg"],
            [model, f"images/{scene_name(DATES[1])}.tif", "out/b", "B", 4, 1, 32, 2, 0, "csc",
             "fronts/b.gpkg"]]
    if unet:
        rows.append([unet, f"images/{scene_name(DATES[2])}.tif", "out/u", "U", 4, "", "", "", 0,
                     "unet", "fronts/u.gpkg"])
    if bad:
        gdal.Translate(str(folder / "images" / "rgb.tif"), glacier["image"], bandList=[1, 2, 3])
        rows += [[model, "images/missing.tif", "out/m", "M", 4, 3, 32, 2, 0, "csc", ""],
                 [model, "images/rgb.tif", "out/r", "R", 4, 3, 32, 2, 0, "csc", ""]]
    with open(folder / "jobs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(rows)
    return folder / "jobs.csv"


def class_rasters(folder):
    out = {}
    for root, _, files in os.walk(folder / "out"):
        for name in files:
            if name.endswith(".tif"):
                out[os.path.relpath(os.path.join(root, name), folder)] = os.path.join(root, name)
    return out


def table(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_workers_give_the_sequential_results_and_failures_stay_alone(
        glacier, glacier_model, glacier_unet, tmp_path):
    here = make_table(tmp_path / "here", glacier, glacier_model, glacier_unet["path"])
    there = make_table(tmp_path / "there", glacier, glacier_model, glacier_unet["path"])
    first = batch_csc(str(here), str(tmp_path / "here" / "summary.csv"),
                      fronts=str(tmp_path / "here" / "fronts.gpkg"), **OPTIONS)
    lines = []
    second = batch_csc(str(there), str(tmp_path / "there" / "summary.csv"),
                       fronts=str(tmp_path / "there" / "fronts.gpkg"), scheduler="local:2",
                       progress=lambda f, m=None: m and lines.append(m), **OPTIONS)
    for result in (first, second):
        assert (result["ran"], result["failed"], result["done_earlier"]) == (3, 2, 0)
        assert result["fronts"] == 3

    # byte-identical class rasters wherever the jobs ran (same seed)
    a, b = class_rasters(tmp_path / "here"), class_rasters(tmp_path / "there")
    assert sorted(a) == sorted(b) and len(a) == 5  # 3 class rasters + 2 phase-one maps
    for name in a:
        assert filecmp.cmp(a[name], b[name], shallow=False), name

    # the table: Done, Status and Error of every job; the failures carry their own message
    for path in (here, there):
        rows = {r["ExpShortHand"]: r for r in table(path)}
        assert [rows[k]["Done"] for k in "ABUMR"] == ["1", "1", "1", "0", "0"]
        assert [rows[k]["Status"] for k in "ABUMR"] == ["ok"] * 3 + ["failed"] * 2
        assert "not an image" in rows["M"]["Error"]
        assert "Dims is 4 but rgb.tif has 3 bands" in rows["R"]["Error"]
    job_lines = [m for m in lines if m.startswith("Job ")]
    assert len(job_lines) == 5 and all(" s, " in m for m in job_lines)
    assert sum(" on " in m for m in job_lines) == 5  # the worker that ran each job
    assert lines[-1].startswith("3 jobs run, 2 FAILED")
    summary = {r["ExpShortHand"]: r for r in table(tmp_path / "there" / "summary.csv")}
    assert summary["U"]["Method"] == "unet" and float(summary["U"]["UNet_weighted_F1"]) > 0.3
    assert float(summary["A"]["CSC_weighted_F1"]) > 0.3

    # one merged, dated layer that terminuschange reads as it is
    for folder in ("here", "there"):
        fronts, field = read_fronts(str(tmp_path / folder / "fronts.gpkg"))
        assert field == "date"
        assert [parse_date(day).strftime("%Y%m%d") for day, _ in fronts] == list(DATES)

    # a rerun does only what is not done: the two failed jobs, which fail again
    stamps = {k: os.stat(v).st_mtime_ns for k, v in b.items()}
    again = batch_csc(str(there), str(tmp_path / "there" / "summary.csv"),
                      fronts=str(tmp_path / "there" / "fronts.gpkg"), **OPTIONS)
    assert (again["ran"], again["failed"], again["done_earlier"]) == (0, 2, 3)
    assert stamps == {k: os.stat(v).st_mtime_ns for k, v in b.items()}
    assert again["fronts"] == 3


@pytest.mark.slow
def test_a_job_whose_worker_is_killed_is_rerun(glacier, glacier_model, tmp_path):
    from distributed import Client, LocalCluster

    jobs = make_table(tmp_path, glacier, glacier_model, bad=False)
    killed = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:

        def kill_one_busy_worker():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                busy = [w for w, keys in client.processing().items()
                        if any(str(k).startswith("fjord-job") for k in keys)]
                if busy:
                    time.sleep(2.0)  # mid-job: the engine is loading or phase one runs
                    pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                time.sleep(0.2)

        killer = threading.Thread(target=kill_one_busy_worker, daemon=True)
        killer.start()
        result = batch_csc(str(jobs), str(tmp_path / "summary.csv"),
                           scheduler=cluster.scheduler_address, **OPTIONS)
        killer.join(timeout=5)
    assert killed, "no worker was busy with a job"
    assert (result["ran"], result["failed"]) == (2, 0)
    assert [r["Done"] for r in table(jobs)] == ["1", "1"]
    for path in class_rasters(tmp_path).values():
        assert not os.path.basename(path).startswith(".")  # no half-written file left


def test_scheduler_text_is_checked():
    assert parse_scheduler("") == ("here", None)
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("tcp://head:8786") == ("address", "tcp://head:8786")
    for bad in ("local:0", "local:two", "head:8786", "http://head:8786"):
        with pytest.raises(FjordError, match="SCHEDULER"):
            parse_scheduler(bad)


def test_job_table_methods_and_semicolons(tmp_path):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("Model;DataSource;OutFolder;ExpShortHand;Dims;PatchSize;TileSize;Patience;Done;"
                    "Method\nu.keras;a.tif;out;A;4;;;;0;UNet\nm.keras;a.tif;out;B;4;7;32;10;0;\n")
    _, rows = read_jobs(str(jobs))
    assert [r["Method"] for r in rows] == ["unet", "csc"]


HEADER = "Model,DataSource,OutFolder,ExpShortHand,Dims,PatchSize,TileSize,Patience,Done"


@pytest.mark.parametrize("text, words", [
    ("Model,DataSource,OutFolder,ExpShortHand,Dims,PatchSize,TileSize,Done\n"
     "m.keras,a.tif,out,A,4,7,50,0\n", "lacks the column.*Patience"),
    (HEADER + ",Colour\nm.keras,a.tif,out,A,4,7,50,10,0,red\n", "unknown column.*Colour"),
    (HEADER + ",Method\nu.keras,a.tif,out,A,4,7,32,10,0,rf\n", "Method must be csc or unet"),
    (HEADER + "\nm.keras,a.tif,out,A,4,,32,10,0\n", "PatchSize must be a whole number"),
    (HEADER + "\nm.keras,a.tif,out,A,4,7,32,10,1\nn.keras,b.tif,out,B,4,7,32,10,0\n"
     "n.keras,a.tif,./out/,A,4,7,32,10,0\n",
     r"Lines 2, 4 of the job table write the same files \(A_<image>.tif in .*out_patch7\)"),
])
def test_job_table_errors(tmp_path, text, words):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(text)
    with pytest.raises(FjordError, match=words):
        read_jobs(str(jobs))


@pytest.mark.slow
def test_a_dask_scheduler_that_is_not_there_is_a_clear_error(glacier_model, glacier, tmp_path):
    jobs = make_table(tmp_path, glacier, glacier_model, bad=False)
    with pytest.raises(FjordError, match="Cannot reach the Dask scheduler tcp://127.0.0.1:9"):
        batch_csc(str(jobs), str(tmp_path / "summary.csv"), scheduler="tcp://127.0.0.1:9")
    assert [r["Done"] for r in table(jobs)] == ["0", "0"]


def test_a_read_only_summary_folder_is_found_before_any_job(glacier_model, glacier, tmp_path,
                                                           read_only_folder):
    jobs = make_table(tmp_path, glacier, glacier_model, bad=False)
    with pytest.raises(FjordError, match="folder .* of the summary is not writable"):
        batch_csc(str(jobs), str(read_only_folder / "summary.csv"))
    assert [r["Done"] for r in table(jobs)] == ["0", "0"]


def test_local_workers_are_capped_at_the_cores_and_open_files():
    from fjord.core.run.scheduler import DaskPool, local_workers_cap

    messages = []
    pool = DaskPool("local", 9999, lambda f, m=None: messages.append(m))
    assert pool.value == local_workers_cap() <= (os.cpu_count() or 1)
    assert "capped at" in messages[0] and "local:9999" in messages[0]
    assert DaskPool("local", 1).value == 1


@pytest.mark.slow
def test_an_address_that_answers_but_is_not_dask_says_so():
    import socket
    import threading

    from fjord.core.run.scheduler import DaskPool

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(2)

    def answer():
        for _ in range(2):
            try:
                client, _ = server.accept()
            except OSError:
                return
            client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" * 10)
            client.close()

    threading.Thread(target=answer, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        with pytest.raises(FjordError, match=f"Something answers at {address}, but not as a Dask"):
            with DaskPool("address", address):
                pass
    finally:
        server.close()


def test_a_damaged_image_names_its_file_and_fails_its_row(glacier_model, tmp_path):
    from fjord.core.run.batch import run_row
    from fjord.models.modelfile import read_metadata

    meta = read_metadata(glacier_model)
    images = tmp_path / "scenes"
    images.mkdir()
    damaged = images / "S2A_20190701.tif"
    damaged.write_bytes(b"II*\x00" + b"\x00" * 64)  # a TIFF header and nothing after it
    row = {"Model": glacier_model, "DataSource": str(images), "OutFolder": str(tmp_path / "out"),
           "ExpShortHand": "A", "Dims": str(meta["bands"]), "PatchSize": "7",
           "TileSize": str(meta["tile_size"]), "Patience": "5", "Done": "0", "Method": "csc"}
    outcome = run_row({"index": 0, "row": row, "base": str(tmp_path), "settings": {}})
    assert outcome["status"] == "failed"
    assert outcome["error"].startswith(f"The image {damaged} cannot be read (")
    assert "damaged or incomplete" in outcome["error"]


@pytest.mark.parametrize("raw", [
    '\ufeff"Model";"DataSource";"OutFolder";"ExpShortHand";"Dims";"PatchSize";"TileSize";'
    '"Patience";"Done"\r\n"m.keras";"a;b.tif";"out";"A";"4";"7";"32";"10";"0"\r\n',
    "Model\tDataSource\tOutFolder\tExpShortHand\tDims\tPatchSize\tTileSize\tPatience\tDone\n"
    "m.keras\ta.tif\tout\tA\t4\t7\t32\t10\t0\n",
])
def test_the_job_table_is_written_back_in_the_users_dialect(tmp_path, raw):
    from fjord.core.run.batch import write_jobs

    jobs = tmp_path / "jobs.csv"
    jobs.write_bytes(raw.encode("utf-8"))
    fields, rows = read_jobs(str(jobs))
    write_jobs(str(jobs), fields, rows)
    assert jobs.read_bytes() == raw.encode("utf-8")
    rows[0]["Done"] = "1"
    write_jobs(str(jobs), fields, rows)
    assert jobs.read_bytes() == raw.replace('"0"\r', '"1"\r').replace("\t0\n", "\t1\n").encode()


def _renamed_classes(model, out):
    """A copy of the model file whose classes are not named as glacial ones (class 1, ...)."""
    import json
    import zipfile

    from fjord.models.modelfile import ENTRY

    with zipfile.ZipFile(model) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == ENTRY:
                meta = json.loads(data)
                for cls in meta["schema"]["classes"]:
                    cls["name"] = f"class {cls['value']}"
                data = json.dumps(meta).encode()
            dst.writestr(item, data)
    return str(out)


def test_front_roles_of_a_model_without_glacial_names_come_from_the_role_columns(
        glacier, glacier_model, tmp_path):
    """Without the role columns the job fails at once, before classifying anything, naming the
    column to fill; with them its fronts are found."""
    from fjord.models.modelfile import read_metadata

    model = _renamed_classes(glacier_model, tmp_path / "plain.keras")
    meta = read_metadata(model)
    names = {c["name"]: c["value"] for c in read_metadata(glacier_model)["schema"]["classes"]}
    row = {"Model": model, "DataSource": glacier["image"], "OutFolder": "out",
           "ExpShortHand": "P", "Dims": meta["bands"], "PatchSize": 1,
           "TileSize": meta["tile_size"], "Patience": 2, "Done": 0, "Front": "fronts.gpkg"}
    roles = {"GlacierClasses": str(names["glacier ice"]),
             "OceanClasses": " ".join(str(names[n]) for n in ("open water", "iceberg water",
                                                                "mélange")),
             "RockClasses": f"{names['rock']} {names['snow on rock']}"}

    def run(row):
        jobs = tmp_path / "jobs.csv"
        with open(jobs, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            writer.writeheader()
            writer.writerow(row)
        result = batch_csc(str(jobs), str(tmp_path / "summary.csv"), **OPTIONS)
        return result, table(jobs)[0]

    result, written = run(row)
    assert result["failed"] == 1 and written["Status"] == "failed"
    assert "give the job table's GlacierClasses column" in written["Error"]
    assert not os.path.exists(tmp_path / "out_patch1")  # nothing was classified
    result, written = run({**row, **roles, "GlacierClasses": "99"})
    assert written["Error"].startswith("The job table's GlacierClasses column lists [99]")
    result, written = run({**row, **roles})
    assert written["Status"] == "ok" and written["Done"] == "1", written["Error"]
    assert result["jobs"][0]["status"] == "ok"
    assert ogr.Open(str(tmp_path / "fronts.gpkg")).GetLayer(0).GetFeatureCount() == 1
