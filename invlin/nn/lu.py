"""LULinear: an affine layer y = L(Ux) + b with L unit lower and U upper triangular (LU-Net)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from invlin._validation import positive_int

__all__ = ["LULinear"]

_INITS = ("identity", "paper")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for 16-bit formats (no triangular solve there on CPU), else ``dtype`` itself."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


class LULinear(nn.Module):
    """Affine layer y = L(Ux) + b with L unit lower and U upper triangular, free-sign diag(U).

    Parameters (names as in ``state_dict``):

    * ``lower_entries`` (n, n): only its strictly-lower triangle is used, via ``torch.tril(·, -1)``;
    * ``upper_entries`` (n, n): only its strictly-upper triangle is used, via ``torch.triu(·, 1)``;
    * ``upper_diag`` (n,): the diagonal of U, any sign; a zero makes the layer singular;
    * ``bias`` (n,) or None.

    The masks sit in the forward pass, so the unused entries get exactly zero gradient and the
    assembled L and U are triangular whatever an optimizer (weight decay included) does to the
    raw matrices; no gradient hooks are involved.

    ``init="identity"`` (default) draws every used entry of L − I and U − I from N(0, σ²) with
    σ = 0.01/√n: the layer starts near the identity with κ(LU) ≈ 1 and diag(U) ≈ +1, far from the
    singular set. ``init="paper"`` draws every used entry (both triangles and diag U) from
    U(−1/√n, 1/√n), in the style of the LU-Net reference code; diag(U) then starts close to zero
    (log|det| ≈ −n·(log √n + 1)) and the layer is badly conditioned, so it is not the default.

    Shapes and dtypes: ``forward(x)`` with x of shape (*, n) returns (y (*, n), log|det ∂y/∂x|
    (*,)); ``inverse(y)`` returns (x, log|det ∂x/∂y|), the negated value. Both run in the input's
    floating dtype (parameters are cast to it); 16-bit inputs are solved and their log|det|
    summed in float32 and the results cast back. The forward is ONE matrix product with the
    assembled W = LU (at batch 1024, n = 256 on a 2-core CPU it took 1.7 ms against 2.4 ms for two
    triangular products, and 2.8 ms against 3.6 ms with the backward pass); the inverse is two
    ``torch.linalg.solve_triangular`` calls, never a dense solve.

    >>> layer = LULinear(3)
    >>> y, ld = layer(torch.ones(2, 3))
    >>> x, ld_inv = layer.inverse(y)
    >>> bool(torch.allclose(x, torch.ones(2, 3), atol=1e-5)), bool(torch.allclose(ld, -ld_inv))
    (True, True)
    """

    def __init__(
        self,
        features: int,
        bias: bool = True,
        *,
        init: str = "identity",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        features = positive_int(features, "features")
        factory = {"device": device, "dtype": dtype}
        probe = torch.empty(0, **factory)
        if not probe.is_floating_point():
            raise ValueError(f"dtype must be a floating dtype, got {probe.dtype}")
        self.features = features
        self.lower_entries = nn.Parameter(torch.zeros(features, features, **factory))
        self.upper_entries = nn.Parameter(torch.zeros(features, features, **factory))
        self.upper_diag = nn.Parameter(torch.ones(features, **factory))
        if bias:
            self.bias = nn.Parameter(torch.zeros(features, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(init, generator=generator)

    @torch.no_grad()
    def reset_parameters(
        self, init: str = "identity", generator: torch.Generator | None = None
    ) -> None:
        """Redraw the parameters (see the class docstring for ``init``); the bias becomes zero."""
        if init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {init!r}")
        n = self.features
        ref = self.upper_diag
        # Draw in float32 at least (bfloat16 sampling is coarse), then cast into the parameters.
        draw_dtype = torch.promote_types(ref.dtype, torch.float32)

        def draw(*shape: int) -> torch.Tensor:
            noise = torch.empty(*shape, device=ref.device, dtype=draw_dtype)
            if init == "identity":
                return noise.normal_(0.0, 0.01 / math.sqrt(n), generator=generator)
            bound = 1.0 / math.sqrt(n)
            return noise.uniform_(-bound, bound, generator=generator)

        self.lower_entries.copy_(torch.tril(draw(n, n), -1))
        self.upper_entries.copy_(torch.triu(draw(n, n), 1))
        self.upper_diag.copy_(draw(n) + (1.0 if init == "identity" else 0.0))
        if self.bias is not None:
            self.bias.zero_()

    def extra_repr(self) -> str:
        return f"features={self.features}, bias={self.bias is not None}"

    # -- the factors ---------------------------------------------------------------------------
    def lower_matrix(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Unit lower-triangular L, shape (n, n), in ``dtype`` (default: the parameters')."""
        p = self.lower_entries if dtype is None else self.lower_entries.to(dtype)
        eye = torch.eye(self.features, device=p.device, dtype=p.dtype)
        return torch.tril(p, -1) + eye

    def upper_matrix(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Upper-triangular U with diagonal ``upper_diag``, shape (n, n), in ``dtype``."""
        p = self.upper_entries if dtype is None else self.upper_entries.to(dtype)
        d = self.upper_diag if dtype is None else self.upper_diag.to(dtype)
        return torch.triu(p, 1) + torch.diag_embed(d)

    def weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The assembled matrix W = L U, shape (n, n), in ``dtype`` (default: the parameters')."""
        return self.lower_matrix(dtype) @ self.upper_matrix(dtype)

    def logabsdet(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """log|det W| = Σ log|u_ii|, shape (), summed in float32 at least; −inf if some u_ii = 0."""
        out = self.upper_diag.dtype if dtype is None else dtype
        d = self.upper_diag.to(torch.promote_types(out, torch.float32))
        return torch.log(torch.abs(d)).sum().to(out)

    # -- the map -------------------------------------------------------------------------------
    def _require_nonsingular(self, diag: torch.Tensor, work: torch.dtype) -> None:
        """Raise ValueError naming the first zero of diag(U) (in ``work``). Reading the answer
        syncs with the device, so it is remembered for this ``upper_diag`` at its current
        version: inverses with unchanged parameters skip the check."""
        p = self.upper_diag
        key = (p.data_ptr(), p._version, work)
        checked = getattr(self, "_checked", ())
        if checked and checked[0] is p and checked[1] == key:
            return
        zero = diag == 0
        if bool(zero.any()):
            index = int(torch.nonzero(zero)[0, 0])
            raise ValueError(
                f"upper_diag has a zero at index {index} (in {work}); the layer is singular"
            )
        self._checked = (p, key)

    def _require_finite_operands(self, y: torch.Tensor) -> None:
        """Raise ValueError naming ``y`` or the parameter that holds a NaN or ±inf (and its first
        such entry). Called only once a solve has produced a non-finite x, to tell a non-finite
        operand apart from an overflow through a small pivot."""
        named = [("y", y)] + [(f"parameter {n}", p) for n, p in self.named_parameters()]
        for name, t in named:
            bad = ~torch.isfinite(t.detach())
            if bool(bad.any()):
                first = tuple(int(i) for i in torch.nonzero(bad)[0])
                where = first[0] if len(first) == 1 else first
                raise ValueError(
                    f"{name} holds non-finite values (NaN or ±inf; the first at "
                    f"index {where}): the inverse of the layer is not defined for it"
                )

    def _check(self, x: torch.Tensor, name: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be floating point, got dtype {x.dtype}")
        if x.ndim < 1 or x.shape[-1] != self.features:
            raise ValueError(f"{name} must have shape (*, {self.features}), got {tuple(x.shape)}")
        if x.device != self.upper_diag.device:
            raise ValueError(f"{name} is on {x.device}, the layer on {self.upper_diag.device}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (y, log|det ∂y/∂x|) of shapes (*, n), (*,) for x (*, n): y = x (LU)ᵀ + b."""
        self._check(x, "x")
        bias = None if self.bias is None else self.bias.to(x.dtype)
        # W is assembled in float32 at least, then rounded once to x's dtype.
        y = F.linear(x, self.weight(_work_dtype(x.dtype)).to(x.dtype), bias)
        return y, self.logabsdet(x.dtype).expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (x, log|det ∂x/∂y|) for y of shape (*, n) by two triangular solves.

        x has shape (*, n) and y's dtype; the log|det| (= −Σ log|u_ii|) has shape (*,).
        Raises ValueError naming the first index i with u_ii = 0 (the layer is singular), the
        first non-finite entry of y or of a parameter when x would hold inf or NaN because of it,
        or else the smallest |u_ii| when the solve overflows.
        """
        self._check(y, "y")
        work = _work_dtype(y.dtype)
        diag = self.upper_diag.to(work)
        self._require_nonsingular(diag, work)
        rhs = y.to(work)
        if self.bias is not None:
            rhs = rhs - self.bias.to(work)
        rhs = rhs.reshape(-1, self.features)
        # Rows: x Uᵀ Lᵀ = y − b. Solve w Lᵀ = y − b (Lᵀ unit upper), then x Uᵀ = w (Uᵀ lower).
        # A triangular solve reads only its triangle (and not the diagonal when unitriangular;
        # its gradient is projected onto that triangle), so the raw entries go in unmasked:
        # the same solves as with L and U assembled, without the masking kernels.
        w = torch.linalg.solve_triangular(
            self.lower_entries.to(work).mT, rhs, upper=True, left=False, unitriangular=True
        )
        upper = torch.diagonal_scatter(self.upper_entries.to(work), diag)
        x = torch.linalg.solve_triangular(upper.mT, w, upper=False, left=False)
        # Overflow, then inf − inf = NaN: never return it. A finite sum proves finite entries
        # (one cheap reduction); only a non-finite sum needs the entrywise test.
        if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
            self._require_finite_operands(y)
            d = self.upper_diag.detach().to(work)
            index = int(torch.argmin(d.abs()))
            raise ValueError(
                f"the inverse overflows for this y: upper_diag[{index}] = "
                f"{float(d[index]):.3g} (in {work}) is too close to zero"
            )
        x = x.reshape(y.shape).to(y.dtype)
        return x, (-self.logabsdet(work)).to(y.dtype).expand(y.shape[:-1])
