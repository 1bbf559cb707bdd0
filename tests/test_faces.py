"""The face model: dlib's detector, aligner and ResNet embedding on real portraits."""

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from characters import faces
from studio.cpu import cpu_workers
from tests.face_data import encoded, frame_with, portrait_scan, scaled
from tests.factories import FACES_DIR, image_bytes

PORTRAITS = ["astronaut.png", "biden.jpg", "grace_hopper.jpg", "obama.jpg", "obama2.jpg"]


def test_it_finds_the_model_files_without_importing_their_package():
    folder = faces.model_dir()

    assert (folder / "shape_predictor_5_face_landmarks.dat").is_file()
    assert (folder / "dlib_face_recognition_resnet_model_v1.dat").is_file()


def test_it_loads_the_models_once_per_process():
    assert faces._models() is faces._models()


@pytest.mark.parametrize("name", PORTRAITS)
def test_it_finds_one_face_with_box_score_size_and_embedding(name):
    scan = portrait_scan(name)
    with Image.open(FACES_DIR / name) as image:
        assert (scan.width, scan.height) == image.size

    [face] = scan.faces
    left, top, right, bottom = face.box
    assert 0 <= left < right <= scan.width and 0 <= top < bottom <= scan.height
    assert face.size == pytest.approx(right - left, abs=2)
    assert face.size >= 80
    assert face.score > 0.5
    assert face.embedding.dtype == np.float32
    assert face.embedding.shape == (faces.EMBEDDING_SIZE,)
    assert 1.2 < float(np.linalg.norm(face.embedding)) < 1.6  # raw dlib descriptors


def test_it_maps_boxes_from_the_small_copy_back_to_full_resolution():
    large = scaled("obama.jpg", 2.0)  # 1820x2274: detected on a copy 640 px high
    scale = faces.DETECT_LONG_SIDE / max(large.size)
    copy = large.resize(
        (round(large.width * scale), round(large.height * scale)), Image.Resampling.BILINEAR
    )

    [face_large] = faces.scan(large).faces
    [face_copy] = faces.scan(copy).faces

    for full, small in zip(face_large.box, face_copy.box, strict=True):
        assert full == pytest.approx(small / scale, abs=1 / scale + 1)
    assert face_large.size > 500
    cosine = np.dot(face_large.embedding, face_copy.embedding) / (
        np.linalg.norm(face_large.embedding) * np.linalg.norm(face_copy.embedding)
    )
    assert cosine > 0.97  # the same face, embedded from each image's own pixels


def test_it_returns_no_face_for_a_picture_without_one():
    scan = faces.scan(image_bytes(size=(320, 240), color=(90, 140, 200)))

    assert scan.faces == []
    assert scan.largest is None


def test_it_returns_every_face_largest_first():
    scan = faces.scan(frame_with("grace_hopper.jpg", "obama.jpg"))

    assert len(scan.faces) == 2
    assert scan.faces[0].size >= scan.faces[1].size
    left_face = min(scan.faces, key=lambda face: face.box[0])
    assert left_face.box[2] < 640 < max(face.box[0] for face in scan.faces)


def test_it_searches_a_small_face_again_upsampled():
    tiny = scaled("grace_hopper.jpg", 0.22)  # a face about 47 px wide

    assert faces.scan(tiny, retry_upsampled=False).faces == []
    [face] = faces.scan(tiny).faces
    assert 35 <= face.size <= 60


def test_it_accepts_bytes_paths_arrays_and_pil_images(tmp_path):
    image = scaled("grace_hopper.jpg", 0.5)
    path = tmp_path / "grace.png"
    image.save(path)
    inputs = [encoded(image, format="PNG"), path, str(path), np.asarray(image), image]

    embeddings = [faces.scan(item).faces[0].embedding for item in inputs]

    for embedding in embeddings[1:]:
        assert np.allclose(embedding, embeddings[0], atol=1e-5)


def test_it_scans_in_the_process_pool_with_the_same_result():
    data = (FACES_DIR / "obama2.jpg").read_bytes()

    pooled = faces.scan_in_pool(data)
    [many] = faces.scan_many_in_pool([Path(FACES_DIR / "obama2.jpg")])

    local = portrait_scan("obama2.jpg")
    assert pooled.faces[0].box == local.faces[0].box == many.faces[0].box
    assert np.allclose(pooled.faces[0].embedding, local.faces[0].embedding, atol=1e-5)
    assert pickle.loads(pickle.dumps(pooled)).faces[0].box == pooled.faces[0].box


def test_it_stores_embeddings_as_float32_bytes():
    embedding = portrait_scan("biden.jpg").faces[0].embedding

    data = faces.embedding_to_bytes(embedding)

    assert len(data) == 4 * faces.EMBEDDING_SIZE
    assert np.array_equal(faces.embedding_from_bytes(memoryview(data)), embedding)
    with pytest.raises(ValueError, match="128 float32 values, not 3"):
        faces.embedding_from_bytes(np.zeros(3, dtype=np.float32).tobytes())


def test_it_warms_every_pool_worker():
    assert faces.warm_pool() == cpu_workers()
