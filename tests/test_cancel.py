"""harrier.cancel: a forward stops before its next layer once its thread's check is true; nothing else changes."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from harrier import Embedder
from harrier.cancel import Cancelled, cancel_when, raise_if_cancelled


def test_check_is_per_thread_and_restored_after_the_block():
    raise_if_cancelled()  # no check installed: a no-op
    seen = []
    with cancel_when(lambda: True):
        with pytest.raises(Cancelled):
            raise_if_cancelled()
        other = threading.Thread(target=lambda: seen.append(raise_if_cancelled()))
        other.start()
        other.join()
        with cancel_when(lambda: False):
            raise_if_cancelled()
        with pytest.raises(Cancelled):
            raise_if_cancelled()  # the outer check is back
    raise_if_cancelled()
    assert seen == [None]  # another thread never sees this thread's check


def test_the_decoder_asks_before_every_layer_and_stops(tiny_gemma3_dir):
    model = Embedder.from_pretrained(str(tiny_gemma3_dir))
    texts = ["one sentence", "and another one"]
    want = model.encode(texts, progress=False)
    asked = []

    def check():
        asked.append(1)
        return len(asked) > 1  # let layer 0 run, stop before layer 1

    with cancel_when(check), pytest.raises(Cancelled):
        model.encode(texts, progress=False)
    assert len(asked) == 2
    with cancel_when(lambda: False):
        np.testing.assert_array_equal(model.encode(texts, progress=False), want)  # a false check changes nothing
