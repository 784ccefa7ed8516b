"""tdcore: over-parameterised symmetric tensor decomposition, computed implicitly.

The functional API re-exported here is documented in each private module:
``_tensor`` (implicit symmetric CP tensors), ``_objective`` (objectives and
gradients), ``_algorithm1`` (the paper's Algorithm 1, batched), ``_refine``
(Levenberg--Marquardt refinement and ``decompose``, beyond the paper), ``_backend``
(NumPy / CuPy), ``_book`` and ``_setup_demo`` (helpers for the book's chapters).
"""

from ._backend import *  # noqa: F401,F403
from ._tensor import *  # noqa: F401,F403
from ._objective import *  # noqa: F401,F403
from ._algorithm1 import *  # noqa: F401,F403
from ._book import *  # noqa: F401,F403
from ._setup_demo import *  # noqa: F401,F403
from ._deflation import *  # noqa: F401,F403
from ._baselines import *  # noqa: F401,F403
from ._refine import *  # noqa: F401,F403
from ._bench import *  # noqa: F401,F403
from ._landscape import *  # noqa: F401,F403
from ._experiments import *  # noqa: F401,F403

__version__ = "0.1.0"
