"""The numpy face network gives dlib's own descriptors, read from dlib's own model file."""

import os

import numpy as np
import pytest

from characters import faces
from characters.dlib_resnet import CHIP_SIZE, FaceResNet, ModelFormatError
from studio.cpu import cpu_pool
from tests.face_data import frame_with
from tests.factories import FACES_DIR

PORTRAITS = ["astronaut.png", "biden.jpg", "grace_hopper.jpg", "obama.jpg", "obama2.jpg"]


@pytest.fixture(scope="module")
def dlib_network():
    import dlib

    return dlib.face_recognition_model_v1(str(faces.model_dir() / faces.RECOGNITION_MODEL))


def chips_of(image) -> list[np.ndarray]:
    import dlib

    models = faces._models()
    rgb = np.asarray(faces.load_rgb(image))
    boxes, _scores, _ = models.detector.run(rgb, 0, 0)
    boxes = sorted(boxes, key=lambda box: box.area(), reverse=True)
    return [
        np.asarray(
            dlib.get_face_chip(
                rgb, models.shape_predictor(rgb, box), size=CHIP_SIZE, padding=faces.CHIP_PADDING
            )
        )
        for box in boxes
    ]


def assert_same_descriptor(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == np.float32 and ours.shape == (128,)
    assert np.abs(ours - theirs).max() < 1e-5  # float32 sums in another order
    cosine = float(ours @ theirs / (np.linalg.norm(ours) * np.linalg.norm(theirs)))
    assert cosine == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", PORTRAITS)
def test_it_computes_dlibs_descriptor_for_every_portrait(name, dlib_network):
    chip = chips_of(FACES_DIR / name)[0]

    ours = faces._models().embedder.embed(chip)
    theirs = np.asarray(dlib_network.compute_face_descriptor(chip), dtype=np.float32)

    assert_same_descriptor(ours, theirs)


def test_it_computes_dlibs_descriptor_for_faces_in_a_frame(dlib_network):
    frame = frame_with("obama2.jpg", "grace_hopper.jpg")
    chips = chips_of(frame)
    assert len(chips) == 2

    for chip in chips:
        ours = faces._models().embedder.embed(chip)
        theirs = np.asarray(dlib_network.compute_face_descriptor(chip), dtype=np.float32)
        assert_same_descriptor(ours, theirs)


def test_it_computes_dlibs_descriptor_for_any_picture(dlib_network):
    # Noise, flat colour and saturated pixels: every path through the network, not only faces.
    rng = np.random.default_rng(7)
    chips = [
        rng.integers(0, 256, (CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8),
        np.full((CHIP_SIZE, CHIP_SIZE, 3), 255, dtype=np.uint8),
        np.zeros((CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8),
    ]
    for chip in chips:
        ours = faces._models().embedder.embed(chip)
        theirs = np.asarray(dlib_network.compute_face_descriptor(chip), dtype=np.float32)
        assert_same_descriptor(ours, theirs)


def test_it_refuses_a_chip_of_another_size():
    with pytest.raises(ValueError, match="150x150"):
        faces._models().embedder.embed(np.zeros((100, 100, 3), dtype=np.uint8))


def test_it_refuses_a_file_that_is_not_this_network():
    shape_model = (faces.model_dir() / "shape_predictor_5_face_landmarks.dat").read_bytes()
    with pytest.raises(ModelFormatError):
        FaceResNet(shape_model)
    whole = (faces.model_dir() / faces.RECOGNITION_MODEL).read_bytes()
    with pytest.raises(ModelFormatError, match="ends too early"):
        FaceResNet(whole[: len(whole) // 2])


def test_pool_processes_run_the_maths_on_one_thread_each():
    # A process per core already: BLAS threads on top would fight over the same cores.
    assert cpu_pool().submit(os.getenv, "OPENBLAS_NUM_THREADS").result() == "1"
