"""The formats ``squeezer export`` and ``pick`` write: each name, and the files of a trial's run it copies."""

FORMATS = {"onnx": ("model.onnx",), "torch": ("student.pt", "architecture.json"), "hf": ("model",),
           "ort-genai": ("onnxruntime-genai",)}
FORMAT_HELP = ("onnx (a classifier's default) or torch; a language model's ort-genai (its default where measured in "
               "ONNX Runtime GenAI: the folder onnxruntime_genai loads) or hf (its save_pretrained folder)")

__all__ = ["FORMATS", "FORMAT_HELP"]
