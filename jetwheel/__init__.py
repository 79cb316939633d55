"""jetwheel: build, verify and serve the Jetson vLLM wheel stack.

Data flows one way: recipe -> plan -> build -> repair -> verify -> publish -> serve.
"""

__version__ = "0.1.0"
