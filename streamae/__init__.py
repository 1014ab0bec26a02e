"""streamae: streaming anomaly detection with ONNX autoencoders on Kafka.

The serving path (``decode`` → ``windows`` → ``scoring`` → ``alerts`` → ``daemon``)
imports no training stack; ``streamae.training.fit`` needs the ``train`` extra (PyTorch).
"""

__version__ = "0.1.0"
