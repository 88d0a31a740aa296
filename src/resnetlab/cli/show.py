"""`resnetlab show filters|templates|features|curves|confusion`: PNG figures of what a network learned."""

from __future__ import annotations


def add_commands(sub) -> None:
    show = sub.add_parser(
        "show", help="figures of what a network learned: filters, templates, features, curves, confusion",
        description="Draw one PNG figure and print its path. Figures of a run go into the run folder "
                    "unless --out says otherwise.")
    figures = show.add_subparsers(dest="figure", metavar="FIGURE", required=True)

    p = figures.add_parser("filters", help="the first convolution's filters as an image grid",
                           description="The first conv layer's filters, each min-max scaled (gray for 1 "
                                       "input channel, RGB for 3). Default output RUN/filters.png.")
    p.add_argument("run_dir", metavar="RUN", help="a run folder written by `resnetlab train`")
    p.add_argument("--out", help="PNG file to write")
    p.set_defaults(run=cmd_filters)

    p = figures.add_parser("templates", help="a linear classifier's class templates (rows of W as images)",
                           description="Train a linear classifier f = Wx + b (softmax regression) on the "
                                       "flattened images of an in-memory data set, in seconds, and draw each "
                                       "row of W as an image: one template per class, test accuracy in the "
                                       "title. Default output templates-DATA.png in the current folder.")
    p.add_argument("--data", default="fashion-mnist",
                   help="fashion-mnist (default), mnist, cifar10, cifar100, or a folder/archive of images")
    p.add_argument("--data-dir", help="where to look for data sets first")
    p.add_argument("--epochs", type=int, default=5, help="passes over the training set (default 5; a small "
                   "set gets more, up to 300 steps)")
    p.add_argument("--weight-decay", type=float, default=1e-2,
                   help="L2 penalty on W; larger gives smoother templates (default 0.01)")
    p.add_argument("--image-size", type=int, help="image folders: resize the shorter side to this and "
                   "centre-crop a square")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file to write")
    p.set_defaults(run=cmd_templates)

    p = figures.add_parser("features", help="feature maps after each stage for one image",
                           description="Run one image file (any size; gray, RGB, RGBA or palette) through a "
                                       "trained run, prepared as its test images are, and draw the first "
                                       "channels after each stage, with the prediction in the title. Default "
                                       "output RUN/features-IMAGE.png.")
    p.add_argument("run_dir", metavar="RUN", help="a run folder written by `resnetlab train`")
    p.add_argument("image", metavar="IMAGE", help="an image file (PNG, JPEG, GIF, WEBP, BMP, ...)")
    p.add_argument("--channels", type=int, default=8, help="channels shown per stage (default 8)")
    p.add_argument("--out", help="PNG file to write")
    p.set_defaults(run=cmd_features)

    p = figures.add_parser("curves", help="training and test error of one or several runs",
                           description="Training error (dashed) and test error (solid) against "
                                       "iterations or epochs, one colour per run, from each run's "
                                       "metrics.jsonl. Default output FIRST_RUN/curves.png.")
    p.add_argument("run_dirs", metavar="RUN", nargs="+", help="run folders written by `resnetlab train`")
    p.add_argument("--x", default="iterations", choices=["iterations", "epochs"], help="the x axis")
    p.add_argument("--out", help="PNG file to write")
    p.set_defaults(run=cmd_curves)

    p = figures.add_parser("confusion", help="the confusion matrix of a run, with class names",
                           description="Evaluate a run (fp32, its own preprocessing, as `resnetlab "
                                       "eval`) and draw its confusion matrix: rows = true class, counts in "
                                       "the cells. Default output RUN/confusion.png.")
    p.add_argument("run_dir", metavar="RUN", help="a run folder written by `resnetlab train`")
    p.add_argument("--data", help="data set (default: the one the run was trained on)")
    p.add_argument("--data-dir")
    p.add_argument("--split", default="test", choices=["test", "train"])
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="PNG file to write")
    p.set_defaults(run=cmd_confusion)


def cmd_filters(args) -> int:
    from ..viz.filters import show_filters

    print(show_filters(args.run_dir, args.out))
    return 0


def cmd_templates(args) -> int:
    from ..viz.templates import default_templates_path, fit_templates, plot_templates, templates_title

    clf = fit_templates(args.data, args.data_dir, args.epochs, args.image_size, args.seed, args.weight_decay)
    out = plot_templates(clf.weight, clf.classes, args.out or default_templates_path(args.data),
                         templates_title(clf, args.data))
    accuracy = "—" if clf.test_accuracy is None else f"{clf.test_accuracy:.4f}"
    print(f"linear classifier: test accuracy {accuracy}, training accuracy {clf.train_accuracy:.4f}")
    print(out)
    return 0


def cmd_features(args) -> int:
    from ..viz.features import show_features

    print(show_features(args.run_dir, args.image, args.out, channels=args.channels))
    return 0


def cmd_curves(args) -> int:
    from ..viz.curves import show_curves

    print(show_curves(args.run_dirs, args.out, x=args.x))
    return 0


def cmd_confusion(args) -> int:
    from ..viz.confusion import show_confusion

    print(show_confusion(args.run_dir, args.out, data=args.data, data_dir=args.data_dir, split=args.split,
                         device=args.device))
    return 0
