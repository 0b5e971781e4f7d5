#!/usr/bin/python3
"""torch_twin.py: the PyTorch twin of one `make bench` configuration.

Usage (tests/bench/bench.c runs it; Debian's python3-torch works only with /usr/bin/python3):
  /usr/bin/python3 -E -s tests/bench/torch_twin.py name=maml_omniglot_fo ways=5 shots=1 query=1 \
      meta_batch=32 inner_steps=1 inner_lr=0.4 first_order=1 gan=0 z_dim=0 code_dim=0 \
      g_filters=0 fakes=0 seconds=6 threads=1,2

The same meta-learning as the C configuration, written the way a PyTorch user writes MAML:
functional networks over a list of parameter tensors, the inner step through
torch.autograd.grad (create_graph=True for second order), tasks of a meta-batch one after the
other, torch's intra-op threads set to the thread count, Adam from torch.optim.
  - D: strided conv4 as models/conv4.c: 4 x [conv3x3 64 stride 2 pad 1, no bias -> batchnorm with
    batch statistics (scale, shift) -> ReLU] -> spatial mean -> linear(ways).
  - MAML: inner SGD on the support cross-entropy; the meta-loss is the query cross-entropy at
    the adapted weights; first order drops the inner step's graph.
  - MetaGAN (gan=1, models/metagan.c): encoder E 2 x [conv3x3 32 stride 2 -> BN -> ReLU] -> mean ->
    linear(code_dim), averaged over the support; generator G [z, h] -> linear -> ReLU ->
    (2F, 7, 7) -> deconv 4x4/2 -> BN -> ReLU -> deconv 4x4/2 (bias) -> sigmoid. D's N+1 loss with
    the fake logit fixed at 0 (supervised + real + fake terms) in the inner loop (support and
    fakes) and the outer loop (query and fresh fakes); G and E minimise feature matching of the
    adapted D's pooled features, D's weights held fixed for that gradient; separate Adam states.
Inputs are random tensors of the episode shapes (28x28, one channel), drawn once per task slot:
timing does not depend on pixel values, and the twin is spared the C side's episode sampling.
Timing as bench.c (see timed()).

Output lines: "version <torch version>", "result <name> <threads> <it/s>", "rss <name> <KiB>".
"""
import resource
import sys
import time


def die(msg):
    sys.stderr.write("torch_twin: error: %s\n" % msg)
    sys.exit(2)


try:
    import torch
    import torch.nn.functional as F
except Exception as e:  # ImportError, or a broken install
    die("cannot import torch (%s: %s); run `make deps` (Debian's python3-torch, /usr/bin/python3)"
        % (type(e).__name__, e))


def parse_args(argv):
    cfg = {}
    for a in argv:
        if "=" not in a:
            die("argument '%s' is not key=value" % a)
        k, v = a.split("=", 1)
        cfg[k] = v
    need = ["name", "ways", "shots", "query", "meta_batch", "inner_steps", "inner_lr",
            "first_order", "gan", "z_dim", "code_dim", "g_filters", "fakes", "seconds", "threads"]
    for k in need:
        if k not in cfg:
            die("missing key %s" % k)
    out = {"name": cfg["name"], "inner_lr": float(cfg["inner_lr"]),
           "seconds": float(cfg["seconds"]),
           "threads": [int(t) for t in cfg["threads"].split(",")]}
    for k in need:
        if k not in out:
            out[k] = int(cfg[k])
    return out


def xavier(shape, fan_in, fan_out):
    a = (6.0 / (fan_in + fan_out)) ** 0.5
    return (torch.rand(shape) * 2 - 1) * a


def conv4_params(ways, filters=64):
    ps, c = [], 1
    for _ in range(4):
        ps += [xavier((filters, c, 3, 3), c * 9, filters * 9), torch.ones(filters),
               torch.zeros(filters)]
        c = filters
    ps += [xavier((ways, filters), filters, ways), torch.zeros(ways)]
    return [p.requires_grad_() for p in ps]


def conv4(x, p):
    """Returns (logits, pooled features)."""
    for i in range(4):
        x = F.conv2d(x, p[3 * i], stride=2, padding=1)
        x = F.batch_norm(x, None, None, p[3 * i + 1], p[3 * i + 2], training=True)
        x = F.relu(x)
    feat = x.mean((2, 3))
    return F.linear(feat, p[12], p[13]), feat


def encoder_params(code_dim):
    ps, c = [], 1
    for _ in range(2):
        ps += [xavier((32, c, 3, 3), c * 9, 32 * 9), torch.ones(32), torch.zeros(32)]
        c = 32
    ps += [xavier((code_dim, 32), 32, code_dim), torch.zeros(code_dim)]
    return [p.requires_grad_() for p in ps]


def encoder(x, p):
    for i in range(2):
        x = F.conv2d(x, p[3 * i], stride=2, padding=1)
        x = F.relu(F.batch_norm(x, None, None, p[3 * i + 1], p[3 * i + 2], training=True))
    return F.linear(x.mean((2, 3)), p[6], p[7])


def generator_params(z_dim, code_dim, f):
    n_in, n_out = z_dim + code_dim, 2 * f * 7 * 7
    ps = [xavier((n_out, n_in), n_in, n_out), torch.zeros(n_out),
          xavier((2 * f, f, 4, 4), 2 * f * 16, f * 16), torch.ones(f), torch.zeros(f),
          xavier((f, 1, 4, 4), f * 16, 16), torch.zeros(1)]
    return [p.requires_grad_() for p in ps]


def generator(zin, p, f):
    x = F.relu(F.linear(zin, p[0], p[1])).view(-1, 2 * f, 7, 7)
    x = F.conv_transpose2d(x, p[2], stride=2, padding=1)
    x = F.relu(F.batch_norm(x, None, None, p[3], p[4], training=True))
    return torch.sigmoid(F.conv_transpose2d(x, p[5], p[6], stride=2, padding=1))


def dloss(logits, labels, w_sup, w_real, w_fake):
    """MetaGAN's N+1 loss, fake logit 0 (framework/loss.h fw_dloss)."""
    lse = torch.logsumexp(logits, 1)
    loss = 0
    if labels is not None and w_sup:
        loss = loss + w_sup * (lse - logits.gather(1, labels[:, None])[:, 0]).sum()
    if w_real:
        loss = loss + w_real * F.softplus(-lse).sum()
    if w_fake:
        loss = loss + w_fake * F.softplus(lse).sum()
    return loss


def make_tasks(c, n):
    ns, nq = c["ways"] * c["shots"], c["ways"] * c["query"]
    tasks = []
    for _ in range(n):
        tasks.append((torch.rand(ns, 1, 28, 28), torch.arange(c["ways"]).repeat_interleave(c["shots"]),
                      torch.rand(nq, 1, 28, 28), torch.arange(c["ways"]).repeat_interleave(c["query"])))
    return tasks


def maml_iteration(c, pd, opt, tasks):
    opt.zero_grad()
    second = not c["first_order"]
    for xs, ys, xq, yq in tasks:
        fast = pd
        for _ in range(c["inner_steps"]):
            loss = F.cross_entropy(conv4(xs, fast)[0], ys)
            g = torch.autograd.grad(loss, fast, create_graph=second)
            fast = [w - c["inner_lr"] * gw for w, gw in zip(fast, g)]
        loss_q = F.cross_entropy(conv4(xq, fast)[0], yq)
        (loss_q / len(tasks)).backward()
    opt.step()


def metagan_iteration(c, pd, pe, pg, opt_d, opt_g, tasks):
    opt_d.zero_grad()
    opt_g.zero_grad()
    second = not c["first_order"]
    ns, nq = c["ways"] * c["shots"], c["ways"] * c["query"]
    nf = c["ways"] * c["fakes"]
    mb = len(tasks)
    for xs, ys, xq, yq in tasks:
        code = encoder(xs, pe).mean(0)
        with torch.no_grad():  # the inner loop's fakes: G fixed, no gradient path into G
            fake_s = generator(torch.cat([torch.randn(nf, c["z_dim"]), code.detach().expand(nf, -1)], 1),
                               pg, c["g_filters"])
        fake_q = generator(torch.cat([torch.randn(nq, c["z_dim"]), code.expand(nq, -1)], 1), pg,
                           c["g_filters"])
        fast = pd
        for _ in range(c["inner_steps"]):
            loss = dloss(conv4(xs, fast)[0], ys, 1.0 / ns, 1.0 / ns, 0) + \
                dloss(conv4(fake_s, fast)[0], None, 0, 0, 1.0 / nf)
            g = torch.autograd.grad(loss, fast, create_graph=second)
            fast = [w - c["inner_lr"] * gw for w, gw in zip(fast, g)]
        logits_q, feat_q = conv4(xq, fast)
        logits_f, feat_f = conv4(fake_q, fast)
        loss_d = dloss(logits_q, yq, 1.0 / nq, 1.0 / nq, 0) + dloss(logits_f, None, 0, 0, 1.0 / nq)
        loss_g = ((feat_q.mean(0) - feat_f.mean(0)) ** 2).mean()
        # D's meta-gradient from its loss only; G and E's from feature matching only (through
        # the adapted D's forward, whose weights get nothing from it).
        gd = torch.autograd.grad(loss_d / mb, pd, retain_graph=True)
        gge = torch.autograd.grad(loss_g / mb, pg + pe)
        for p, gp in zip(pd + pg + pe, list(gd) + list(gge)):
            p.grad = gp if p.grad is None else p.grad + gp
    opt_d.step()
    opt_g.step()


def window(step, min_seconds, max_iters=0):
    """Meta-iterations until min_seconds have passed and at least one ran (or max_iters ran);
    returns iterations per second."""
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        t = time.perf_counter() - t0
        if t >= min_seconds or (max_iters and n >= max_iters):
            return n / t


def timed(step, seconds, threads):
    """As bench.c: per thread count 1 warm-up iteration (2 if it took under seconds/6), then 3
    rounds of one window of at least seconds/3 per thread count, taking turns; the median."""
    for t in threads:
        torch.set_num_threads(t)
        window(step, seconds / 6, 2)
    rates = {t: [] for t in threads}
    for _ in range(3):
        for t in threads:
            torch.set_num_threads(t)
            rates[t].append(window(step, seconds / 3))
    return {t: sorted(r)[1] for t, r in rates.items()}


def main():
    c = parse_args(sys.argv[1:])
    torch.manual_seed(1)
    print("version %s" % torch.__version__, flush=True)
    tasks = make_tasks(c, c["meta_batch"])
    pd = conv4_params(c["ways"])
    if c["gan"]:
        pe = encoder_params(c["code_dim"])
        pg = generator_params(c["z_dim"], c["code_dim"], c["g_filters"])
        opt_d = torch.optim.Adam(pd, lr=1e-3)
        opt_g = torch.optim.Adam(pg + pe, lr=1e-3, betas=(0.5, 0.999))

        def step():
            metagan_iteration(c, pd, pe, pg, opt_d, opt_g, tasks)
    else:
        opt = torch.optim.Adam(pd, lr=1e-3)

        def step():
            maml_iteration(c, pd, opt, tasks)
    for t, rate in timed(step, c["seconds"], c["threads"]).items():
        print("result %s %d %.4f" % (c["name"], t, rate), flush=True)
    print("rss %s %d" % (c["name"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss), flush=True)


if __name__ == "__main__":
    main()
