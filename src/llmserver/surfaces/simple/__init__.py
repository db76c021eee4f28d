"""The simple endpoints: ``/infer``, ``/infer/stream``, ``/generate`` and ``/chat``."""
