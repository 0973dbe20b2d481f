"""Time to generate and to write one phantom subject, per format (prints a table).

    python benchmarks/phantom_speed.py [-n 3]

Targets (issue 2): a default 3D subject generates in <= 2 s and writes in <= 2 s. On a shared
machine absolute times are inflated; the table also gives each step relative to generation.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from nnunetv2_symtc.phantom import PhantomConfig, generate_subject, write_spider, write_spineps, write_ssmspine


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=3, help="subjects per measurement (median is reported)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in (("default (t1+t2)", PhantomConfig()), ("tiny (t1+t2)", PhantomConfig.tiny())):
            gen, spider, spider_all, spineps, shapes = [], [], [], [], []
            for seed in range(args.n):
                t, subject = timed(lambda: generate_subject(seed, config))
                gen.append(t)
                shapes.append(subject.shape)
                spider.append(timed(lambda: write_spider(Path(tmp) / f"s{seed}", [(seed, subject)], ("t1", "t2")))[0])
                spider_all.append(timed(lambda: write_spider(Path(tmp) / f"a{seed}", [(seed, subject)],
                                                             ("t1", "t2", "t2_SPACE")))[0])
                spineps.append(timed(lambda: write_spineps(Path(tmp) / f"p{seed}", [(f"s{seed}", subject)]))[0])
            g = float(np.median(gen))
            shape = "x".join(map(str, shapes[0]))
            rows.append((name, shape, "generate", g))
            rows.append((name, shape, "write spider t1+t2", float(np.median(spider))))
            rows.append((name, shape, "write spider t1+t2+t2_SPACE", float(np.median(spider_all))))
            rows.append((name, shape, "write spineps", float(np.median(spineps))))
        import torch  # noqa: F401  (imported once before timing, as the writer needs it)

        t, _ = timed(lambda: write_ssmspine(Path(tmp) / "ssm", 1, augs=args.n))
        rows.append(("ssmspine 512x512", "1x512x512", "generate+write per aug", t / args.n))
    reference = rows[0][3]
    print(f"{'subject':18s} {'shape':12s} {'step':30s} {'seconds':>8s} {'x generate(default)':>20s}")
    for name, shape, step, seconds in rows:
        print(f"{name:18s} {shape:12s} {step:30s} {seconds:8.3f} {seconds / reference:20.2f}")


if __name__ == "__main__":
    main()
