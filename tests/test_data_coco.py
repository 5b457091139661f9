"""COCO detection rows: positives, crowd and degenerate boxes, negatives, subsets, bad input."""

from __future__ import annotations

import json

import pytest

from rft.data.coco import load_coco_detection
from rft.errors import DataError
from test_data_helpers import make_image

SIZES = {1: (100, 80), 2: (120, 90), 3: (90, 90)}
CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 7, "name": "person"}]
ANNOTATIONS = [  # (image, category, xywh, iscrowd)
    (1, 1, [10, 10, 20, 30], 0),
    (1, 1, [50, 20, 10, 10], 0),
    (1, 2, [0, 0, 50, 50], 1),  # crowd: dog is present in image 1, but not a positive
    (2, 2, [5, 5, 30, 30], 0),
    (2, 7, [60, 10, 20, 40], 0),
    (3, 7, [1, 1, 0.5, 3], 0),  # degenerate: person is present in image 3, but not a positive
]
POSITIVES = {(1, "cat"), (2, "dog"), (2, "person")}
ABSENT = {(1, "person"), (2, "cat"), (3, "cat"), (3, "dog")}


def write_coco(tmp_path, annotations=ANNOTATIONS, sizes=SIZES):
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h} for i, (w, h) in sizes.items()]
    for image in images:
        make_image(tmp_path / "images" / image["file_name"], SIZES[image["id"]])
    anns = [{"id": 100 + k, "image_id": i, "category_id": c, "bbox": b, "iscrowd": crowd, "area": b[2] * b[3]}
            for k, (i, c, b, crowd) in enumerate(annotations)]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))
    return path, tmp_path / "images"


def pairs(rows):
    return {(int(r["id"].split(":")[1]), r["query"]["category"]) for r in rows}


def test_positive_rows(tmp_path):
    rows, report = load_coco_detection(*write_coco(tmp_path), name="coco", negative_ratio=0)
    assert pairs(rows) == POSITIVES and report.rows == 3 and report.negatives == 0
    assert report.skipped_boxes == 2  # the crowd box and the degenerate one
    cat = next(r for r in rows if r["id"] == "coco:1:cat")
    assert cat == {
        "id": "coco:1:cat", "dataset": "coco", "task": "detection",
        "image": str((tmp_path / "images" / "000000000001.jpg").resolve()), "image_size": [100, 80],
        "solution": {"boxes": [[10.0, 10.0, 30.0, 40.0], [50.0, 20.0, 60.0, 30.0]], "labels": ["cat", "cat"]},
        "query": {"category": "cat"},
    }


def test_negatives_are_absent_at_the_ratio_and_deterministic(tmp_path):
    files = write_coco(tmp_path)
    rows, report = load_coco_detection(*files, name="coco", negative_ratio=1.0, seed=3)
    negatives = [r for r in rows if not r["solution"]["boxes"]]
    assert len(negatives) == report.negatives == 3  # one per positive
    assert pairs(negatives) <= ABSENT and all(r["solution"]["labels"] == [] for r in negatives)
    assert len({r["id"] for r in rows}) == len(rows) == 6
    assert load_coco_detection(*files, name="coco", negative_ratio=1.0, seed=3)[0] == rows
    seeds = {frozenset(pairs(load_coco_detection(*files, name="coco", seed=s)[0])) for s in range(8)}
    assert len(seeds) > 1
    capped, _ = load_coco_detection(*files, name="coco", negative_ratio=10)
    assert pairs(capped) == POSITIVES | ABSENT


def test_category_subset(tmp_path):
    rows, _ = load_coco_detection(*write_coco(tmp_path), name="coco", categories=["dog"], negative_ratio=5)
    assert pairs(rows) == {(2, "dog"), (3, "dog")}  # image 1 has a crowd dog: not a negative


def test_unknown_category_lists_the_valid_ones(tmp_path):
    with pytest.raises(DataError, match=r"instances.json: unknown categories \['horse'\]; valid: \['cat', 'dog', 'person'\]"):
        load_coco_detection(*write_coco(tmp_path), name="coco", categories=["dog", "horse"])


def test_missing_image_errors_or_is_skipped(tmp_path):
    annotation_file, image_dir = write_coco(tmp_path)
    missing = image_dir / "000000000002.jpg"
    missing.unlink()
    with pytest.raises(DataError, match=rf"instances.json image 2: {missing}: image file not found"):
        load_coco_detection(annotation_file, image_dir, name="coco")
    rows, report = load_coco_detection(annotation_file, image_dir, name="coco", negative_ratio=0, on_bad_image="skip")
    assert pairs(rows) == {(1, "cat")}
    assert len(report.bad_images) == 1 and str(missing) in report.bad_images[0]
    assert "skipped 1 bad images" in str(report) and "left out 2 boxes" in str(report)


def test_corrupt_image_names_the_file(tmp_path):
    annotation_file, image_dir = write_coco(tmp_path)
    (image_dir / "000000000003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"image 3: .*000000000003.jpg: not a readable image"):
        load_coco_detection(annotation_file, image_dir, name="coco")


def test_size_mismatch_is_an_error(tmp_path):
    annotation_file, image_dir = write_coco(tmp_path, sizes={**SIZES, 3: (90, 91)})
    with pytest.raises(DataError, match=r"image 3: annotated as 90x91 but .*000000000003.jpg is 90x90"):
        load_coco_detection(annotation_file, image_dir, name="coco")


def test_box_outside_the_image_names_the_annotation(tmp_path):
    bad = [*ANNOTATIONS, (3, 1, [80, 10, 40, 20], 0)]
    with pytest.raises(DataError, match=r"instances.json annotation 106 \(image 3\): box \[80, 10, 120, 30\] lies outside the 90x90 image"):
        load_coco_detection(*write_coco(tmp_path, annotations=bad), name="coco")


def test_not_a_coco_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="broken.json: not a COCO annotation file"):
        load_coco_detection(path, tmp_path, name="coco")
    with pytest.raises(DataError, match="absent.json: file not found"):
        load_coco_detection(tmp_path / "absent.json", tmp_path, name="coco")


def test_annotation_of_a_category_not_in_categories(tmp_path):
    """An annotation whose category_id is not in categories was dropped silently, and with negative_ratio its
    image became a "no object" sample for every category. It fails, naming the annotation and the category;
    with on_bad_image: skip it is counted and its image is never a negative."""
    files = write_coco(tmp_path, annotations=[*ANNOTATIONS, (3, 99, [10, 10, 20, 20], 0)])
    with pytest.raises(DataError, match=r"instances.json annotation 106 \(image 3\): category_id 99 is not in categories "
                                        r"\(ids \[1, 2, 7\]\)"):
        load_coco_detection(*files, name="coco")
    rows, report = load_coco_detection(*files, name="coco", negative_ratio=10, on_bad_image="skip")
    assert pairs(rows) == POSITIVES | {(1, "person"), (2, "cat")}  # image 3 (cat, dog absent) is no negative now
    assert len(report.bad_annotations) == 1 and "category_id 99" in report.bad_annotations[0]
    assert "skipped 1 bad annotations" in str(report)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("categories"), r"'categories' is missing \(a COCO annotation file has images, annotations and categories\)"),
    (lambda d: d["annotations"][1].pop("bbox"), r"annotation 101: missing 'bbox' \(\[x, y, width, height\]\)"),
    (lambda d: d["images"][1].pop("file_name"), r"image 2: missing 'file_name' \(a file name\)"),
    (lambda d: d["annotations"][2].update(bbox=[1, 2, 3]), r"annotation 102: bbox \[1, 2, 3\] is not \[x, y, width, height\]"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, "3", 4]), r"annotation 100: bbox \[1, 2, '3', 4\] is not"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 4]), r"annotation 100: bbox \[1, 2, -3, 4\] is not .* at least 0"),
    (lambda d: d["annotations"][0].update(bbox="10,10,20,30"), r"annotation 100: 'bbox' must be \[x, y, width, height\]"),
    (lambda d: d.update(images={"1": {}}), r"'images' is a dict, not a list"),
    (lambda d: d["categories"][0].pop("name"), r"category 1: missing 'name'"),
])
def test_malformed_coco_files_name_record_and_field(tmp_path, change, message):
    annotation_file, image_dir = write_coco(tmp_path)
    data = json.loads(annotation_file.read_text())
    change(data)
    annotation_file.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message):
        load_coco_detection(annotation_file, image_dir, name="coco")
