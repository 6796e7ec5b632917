"""``python -m attnapps.export run=DIR format=safetensors|onnx [out=PATH]``: a trained model for other programs.

* ``format=safetensors`` (:mod:`attnapps.export.weights`): the weights as safetensors, the config and the
  task state (tokenizer, label names, choices made on valid) as JSON. ``attnapps.predict run=OUT`` and
  ``attnapps.serve run=OUT`` load it without pickle.
* ``format=onnx`` (:mod:`attnapps.export.graphs`): the task's inference graphs (a whole classifier; an
  encoder and one decoder step with the decoder's state as explicit inputs and outputs; one language-model
  step with its key/value cache) plus the same JSON, for ONNX Runtime or any other runtime.

``out`` defaults to ``DIR/export/<format>``. In Python::

    from attnapps.predict import load_run
    task, model = load_run("runs/x/export/safetensors")   # a torch model, loaded without pickle
"""

from __future__ import annotations

FORMATS = ("safetensors", "onnx")
