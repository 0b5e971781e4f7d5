#!/usr/bin/python3
"""torch_maml_ref.py: PyTorch autograd reference for MAML's meta-gradient on conv4 (strided).

Usage: /usr/bin/python3 tests/torch_maml_ref.py DIR

Run by tests/test_torch_ref.c with Debian's python3-torch (`make deps` installs it; it works only
with /usr/bin/python3). Builds the same network as models/conv4.c (CONV4_STRIDED) functionally in
float64 and differentiates MAML through autograd, on the weights and the episode the C test wrote.

Inputs in DIR (little-endian, written by the C test):
  config.txt    one "key value" per line: format 1, arch strided, ways, shots, query,
                inner_steps, inner_lr (the float32 value, printed exactly with %.17g), filters,
                c, h, w (image shape), n_params, relu_masks (0 or 1)
  layout.txt    one line per graph node: "index kind param_offset param_count c h w"
                (kind from fw_graph_node_kind, (c, h, w) the node's per-example output shape)
  theta.f32     n_params float32: the flat parameter vector, in node order
  xs.f32        (ways*shots, c, h, w) float32 support images
  ys.i32        (ways*shots,) int32 support labels in [0, ways)
  xq.f32        (ways*query, c, h, w) float32 query images
  yq.i32        (ways*query,) int32 query labels
  with relu_masks 1, the ReLU masks of the C forward passes (uint8 0/1: 1 where the ReLU input
  is > 0), each file the concatenation over the 4 ReLU nodes, in node order, of (B, C, H, W):
  relu_support_<i>.u8  the support pass at theta_i, i = 0 .. inner_steps-1 (B = ways*shots)
  relu_query.u8        the query pass at theta_k (B = ways*query)
Outputs in DIR:
  grad_first_order.f64   n_params float64: grad of L_query at theta_k, theta_k taken as
                         independent of theta (first-order MAML)
  grad_second_order.f64  n_params float64: d L_query(theta_k(theta)) / d theta, exact, through
                         the inner steps (create_graph=True)
  With relu_masks 1 these two follow the C masks (ReLU(z) = mask * z: the float64 derivative of
  the branch the float32 C run took, so that a pre-activation within rounding of 0 that float32
  and float64 put on different sides of the kink does not count as an error), and the same
  gradients with float64's own masks are written to grad_first_order_own.f64 and
  grad_second_order_own.f64.
  result.txt             "key value" lines: support_loss_<i> (loss before inner step i),
                         query_loss (at theta_k), query_loss_own (own masks, relu_masks 1 only),
                         relu_elements (ReLU outputs compared), relu_flips (where the C mask
                         differs from float64's sign of the pre-activation on the branch-matched
                         trajectory), relu_flip_max_abs (largest |pre-activation| among those,
                         0 without flips), status ok (written last)
Exit status: 0 on success; 2 with a message on stderr naming the problem otherwise.
"""
import os
import sys

PROG = "torch_maml_ref"


def die(msg):
    sys.stderr.write("%s: error: %s\n" % (PROG, msg))
    sys.exit(2)


try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except Exception as e:  # ImportError, or a broken install
    die("cannot import torch/numpy with %s (%s: %s); run `make deps` to install python3-torch "
        "and python3-numpy (Debian's torch works only with /usr/bin/python3)"
        % (sys.executable, type(e).__name__, e))

BN_EPS = 1e-5
N_BLOCKS = 4


def read_config(d):
    path = os.path.join(d, "config.txt")
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        die("cannot read %s: %s" % (path, e))
    cfg = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            die("%s:%d: expected 'key value', got %r" % (path, n, line))
        cfg[parts[0]] = parts[1]
    ints = ["format", "ways", "shots", "query", "inner_steps", "filters", "c", "h", "w",
            "n_params", "relu_masks"]
    out = {}
    for k in ints + ["inner_lr", "arch"]:
        if k not in cfg:
            die("%s: missing key '%s'" % (path, k))
    try:
        for k in ints:
            out[k] = int(cfg[k])
        out["inner_lr"] = float(cfg["inner_lr"])
    except ValueError as e:
        die("%s: bad number: %s" % (path, e))
    out["arch"] = cfg["arch"]
    if out["format"] != 1:
        die("%s: format %d, this script reads format 1" % (path, out["format"]))
    if out["arch"] != "strided":
        die("%s: arch '%s', only 'strided' (CONV4_STRIDED) is implemented" % (path, out["arch"]))
    for k in ["ways", "shots", "query", "filters", "c", "h", "w", "n_params"]:
        if out[k] <= 0:
            die("%s: %s = %d must be positive" % (path, k, out[k]))
    if out["relu_masks"] not in (0, 1):
        die("%s: relu_masks must be 0 or 1, got %d" % (path, out["relu_masks"]))
    if out["inner_steps"] < 0:
        die("%s: inner_steps = %d is negative" % (path, out["inner_steps"]))
    return out


def expected_layout(cfg):
    """(kind, param_count, (c, h, w)) per node, as models/conv4.c builds CONV4_STRIDED."""
    nodes = [("input", 0, (cfg["c"], cfg["h"], cfg["w"]))]
    c, h, w, f = cfg["c"], cfg["h"], cfg["w"], cfg["filters"]
    for _ in range(N_BLOCKS):
        h, w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
        nodes.append(("conv2d", f * c * 9, (f, h, w)))
        nodes.append(("batchnorm", 2 * f, (f, h, w)))
        nodes.append(("relu", 0, (f, h, w)))
        c = f
    nodes.append(("avgpool", 0, (f, 1, 1)))
    nodes.append(("linear", cfg["ways"] * f + cfg["ways"], (cfg["ways"], 1, 1)))
    return nodes


def check_layout(d, cfg):
    path = os.path.join(d, "layout.txt")
    try:
        with open(path) as f:
            rows = [l.split() for l in f.read().splitlines() if l.strip()]
    except OSError as e:
        die("cannot read %s: %s" % (path, e))
    exp = expected_layout(cfg)
    if len(rows) != len(exp):
        die("%s: %d nodes, conv4 strided has %d" % (path, len(rows), len(exp)))
    off = 0
    for i, (row, (kind, count, shape)) in enumerate(zip(rows, exp)):
        if len(row) != 7:
            die("%s: node line %d: expected 7 fields, got %r" % (path, i, " ".join(row)))
        try:
            idx, off_c, count_c, c, h, w = (int(row[0]), int(row[2]), int(row[3]), int(row[4]),
                                            int(row[5]), int(row[6]))
        except ValueError:
            die("%s: node line %d: bad number in %r" % (path, i, " ".join(row)))
        got = (idx, row[1], count_c, (c, h, w))
        want = (i, kind, count, shape)
        if got != want:
            die("%s: node %d is (index, kind, params, shape) %r, conv4 strided expects %r"
                % (path, i, got, want))
        if count_c and off_c != off:
            die("%s: node %d (%s) parameters at offset %d, expected %d (node order)"
                % (path, i, kind, off_c, off))
        off += count_c
    if off != cfg["n_params"]:
        die("%s: parameters add up to %d, config says n_params %d" % (path, off, cfg["n_params"]))


def read_raw(d, name, dtype, count):
    path = os.path.join(d, name)
    try:
        a = np.fromfile(path, dtype=dtype)
    except OSError as e:
        die("cannot read %s: %s" % (path, e))
    if a.size != count:
        die("%s: %d values of %s, expected %d" % (path, a.size, np.dtype(dtype).name, count))
    return a


def split_params(theta, cfg):
    """Views of the flat vector: per block (conv W, bn scale, bn shift), then (linear W, b)."""
    ps, off = [], 0

    def take(*shape):
        nonlocal off
        n = 1
        for s in shape:
            n *= s
        t = theta[off:off + n].reshape(shape)
        off += n
        return t

    c, f = cfg["c"], cfg["filters"]
    for _ in range(N_BLOCKS):
        ps.append(take(f, c, 3, 3))
        ps.append(take(f))
        ps.append(take(f))
        c = f
    ps.append(take(cfg["ways"], f))
    ps.append(take(cfg["ways"]))
    assert off == theta.numel()
    return ps


class FlipStats:
    """Where the C masks disagree with the sign of float64's pre-activations."""

    def __init__(self):
        self.elements = 0
        self.flips = 0
        self.max_abs = 0.0

    def add(self, z, mask):
        z = z.detach()
        own = z > 0
        diff = own != mask
        self.elements += z.numel()
        n = int(diff.sum())
        if n:
            self.flips += n
            self.max_abs = max(self.max_abs, float(z[diff].abs().max()))


def forward(ps, x, masks=None, stats=None):
    """masks: None (ReLU) or one bool tensor per block, shaped like its activation."""
    for b in range(N_BLOCKS):
        wc, scale, shift = ps[3 * b:3 * b + 3]
        x = F.conv2d(x, wc, None, stride=2, padding=1)
        # Training mode: batch statistics over (N, H, W), biased variance; no running stats.
        x = F.batch_norm(x, None, None, weight=scale, bias=shift, training=True, eps=BN_EPS)
        if masks is None:
            x = F.relu(x)
        else:
            if stats is not None:
                stats.add(x, masks[b])
            x = x * masks[b].to(x.dtype)
    x = x.mean(dim=(2, 3))
    return F.linear(x, ps[-2], ps[-1])


def loss_fn(ps, x, y, masks=None, stats=None):
    return F.cross_entropy(forward(ps, x, masks, stats), y)  # mean over the batch


def maml_grad(theta0, cfg, xs, ys, xq, yq, second_order, masks=None, stats=None):
    """Returns (meta-gradient, support losses, query loss). masks: None or
    {"support": [per step: per block], "query": per block}."""
    ms = (lambda i: None) if masks is None else (lambda i: masks["support"][i])
    mq = None if masks is None else masks["query"]
    theta = theta0.clone().requires_grad_(True)
    fast = split_params(theta, cfg)
    support_losses = []
    for i in range(cfg["inner_steps"]):
        ls = loss_fn(fast, xs, ys, ms(i), stats)
        support_losses.append(ls.item())
        gs = torch.autograd.grad(ls, fast, create_graph=second_order)
        fast = [p - cfg["inner_lr"] * g for p, g in zip(fast, gs)]
    if second_order:
        lq = loss_fn(fast, xq, yq, mq, stats)
        (g,) = torch.autograd.grad(lq, theta)
        return g, support_losses, lq.item()
    # First order: theta_k as a leaf of its own, independent of theta.
    fast = [p.detach().requires_grad_(True) for p in fast]
    lq = loss_fn(fast, xq, yq, mq, stats)
    gs = torch.autograd.grad(lq, fast)
    return torch.cat([g.reshape(-1) for g in gs]), support_losses, lq.item()


def relu_shapes(cfg):
    return [shape for kind, _, shape in expected_layout(cfg) if kind == "relu"]


def read_masks(d, name, cfg, batch):
    shapes = relu_shapes(cfg)
    sizes = [batch * c * h * w for c, h, w in shapes]
    a = read_raw(d, name, "u1", sum(sizes))
    if a.max() > 1:
        die("%s: mask bytes must be 0 or 1, found %d" % (os.path.join(d, name), a.max()))
    out, off = [], 0
    for n, shape in zip(sizes, shapes):
        out.append(torch.from_numpy(a[off:off + n].astype(bool)).reshape(batch, *shape))
        off += n
    return out


def write_f64(d, name, t):
    path = os.path.join(d, name)
    a = t.detach().cpu().numpy().astype("<f8")
    try:
        a.tofile(path)
    except OSError as e:
        die("cannot write %s: %s" % (path, e))


def main():
    if len(sys.argv) != 2:
        die("usage: /usr/bin/python3 %s DIR (DIR as written by tests/test_torch_ref.c)"
            % sys.argv[0])
    d = sys.argv[1]
    if not os.path.isdir(d):
        die("%s is not a directory" % d)
    cfg = read_config(d)
    check_layout(d, cfg)
    img = cfg["c"] * cfg["h"] * cfg["w"]
    ns, nq = cfg["ways"] * cfg["shots"], cfg["ways"] * cfg["query"]
    theta = read_raw(d, "theta.f32", "<f4", cfg["n_params"])
    xs = read_raw(d, "xs.f32", "<f4", ns * img)
    ys = read_raw(d, "ys.i32", "<i4", ns)
    xq = read_raw(d, "xq.f32", "<f4", nq * img)
    yq = read_raw(d, "yq.i32", "<i4", nq)
    for name, a in [("theta.f32", theta), ("xs.f32", xs), ("xq.f32", xq)]:
        if not np.all(np.isfinite(a)):
            die("%s holds non-finite values" % name)
    for name, a in [("ys.i32", ys), ("yq.i32", yq)]:
        if a.min() < 0 or a.max() >= cfg["ways"]:
            die("%s: labels must lie in [0, %d), found [%d, %d]"
                % (name, cfg["ways"], a.min(), a.max()))

    torch.manual_seed(0)  # nothing random is used; fixed for good measure
    shape = (cfg["c"], cfg["h"], cfg["w"])
    t_theta = torch.from_numpy(theta.astype(np.float64))
    t_xs = torch.from_numpy(xs.astype(np.float64)).reshape(ns, *shape)
    t_xq = torch.from_numpy(xq.astype(np.float64)).reshape(nq, *shape)
    t_ys = torch.from_numpy(ys.astype(np.int64))
    t_yq = torch.from_numpy(yq.astype(np.int64))

    masks = None
    if cfg["relu_masks"]:
        masks = {"support": [read_masks(d, "relu_support_%d.u8" % i, cfg, ns)
                             for i in range(cfg["inner_steps"])],
                 "query": read_masks(d, "relu_query.u8", cfg, nq)}
    stats = FlipStats()
    args = (t_theta, cfg, t_xs, t_ys, t_xq, t_yq)
    g1, _, lq1 = maml_grad(*args, second_order=False, masks=masks)
    g2, sl2, lq2 = maml_grad(*args, second_order=True, masks=masks, stats=stats)
    results = [("first-order", g1, "grad_first_order"), ("second-order", g2, "grad_second_order")]
    losses = [lq1, lq2]
    if masks is not None:
        o1, _, lo1 = maml_grad(*args, second_order=False)
        o2, _, lo2 = maml_grad(*args, second_order=True)
        results += [("first-order (own masks)", o1, "grad_first_order_own"),
                    ("second-order (own masks)", o2, "grad_second_order_own")]
        losses += [lo1, lo2]
    for name, g, _ in results:
        if g.numel() != cfg["n_params"] or not torch.isfinite(g).all():
            die("the %s meta-gradient is not %d finite values" % (name, cfg["n_params"]))
    if abs(lq1 - lq2) > 1e-12 * max(1.0, abs(lq1)) or not all(map(np.isfinite, losses)):
        die("internal: the query losses of the two orders differ or are not finite: %r" % losses)
    for _, g, stem in results:
        write_f64(d, stem + ".f64", g)
    path = os.path.join(d, "result.txt")
    try:
        with open(path, "w") as f:
            for i, l in enumerate(sl2):
                f.write("support_loss_%d %.17g\n" % (i, l))
            f.write("query_loss %.17g\n" % lq2)
            if masks is not None:
                f.write("query_loss_own %.17g\n" % losses[3])
            f.write("relu_elements %d\n" % stats.elements)
            f.write("relu_flips %d\n" % stats.flips)
            f.write("relu_flip_max_abs %.17g\n" % stats.max_abs)
            f.write("status ok\n")
    except OSError as e:
        die("cannot write %s: %s" % (path, e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
