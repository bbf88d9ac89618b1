"""numpy_dl.functional under PyTorch's name, so `import numpy_dl.nn.functional as F` works as
`import torch.nn.functional as F` does."""
from ..functional import *  # noqa: F401,F403
from ..functional import __all__  # noqa: F401
