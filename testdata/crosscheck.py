"""Cross-checks framesync's frame encoding against msgpack + msgpack_numpy.

Run by frame_python_test.go with Debian's /usr/bin/python3
(packages python3-msgpack and python3-msgpack-numpy). Modes:

  describe FILE   decode FILE with msgpack_numpy and print a JSON description
  golden          print (to stdout, binary) the golden frame packed by Python
  write FILE      write a frame with varied dtypes to FILE and print its
                  JSON description
"""
import json
import sys

import msgpack
import msgpack_numpy
import numpy as np


def describe(frame):
    out = {}
    for key, value in frame.items():
        if isinstance(value, np.ndarray):
            out[key] = {"dtype": value.dtype.str, "shape": list(value.shape),
                        "values": value.ravel().tolist()}
        elif isinstance(value, (bool, np.bool_)):
            out[key] = {"type": "bool", "value": bool(value)}
        elif isinstance(value, (int, np.integer)):
            out[key] = {"type": "int", "value": int(value)}
        elif isinstance(value, (float, np.floating)):
            out[key] = {"type": "float", "value": float(value)}
        elif isinstance(value, str):
            out[key] = {"type": "str", "value": value}
        elif value is None:
            out[key] = {"type": "none"}
        else:
            raise SystemExit("unexpected value for %s: %r" % (key, value))
    return out


def golden_frame():
    # Keys in sorted order: Python packs dicts in insertion order.
    frame = {
        "arrays.forces": np.array([[0.0, 0.0, -0.5], [0.25, 0.0, 0.25], [-0.25, 0.0, 0.25]]),
        "calc.energy": -14.25,
        "calc.stress": np.array([0.5, 0.5, 0.5, 0.0, 0.0, 0.0]),
        "cell": np.array([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]]),
        "info.converged": True,
        "info.name": "water",
        "info.step": 7,
        "numbers": np.array([8, 1, 1], dtype="<i8"),
        "pbc": np.array([True, True, False]),
        "positions": np.array([[0.0, 0.0, 0.119], [0.0, 0.763, -0.477], [0.0, -0.763, -0.477]]),
    }
    return frame


def varied_frame():
    # Deliberately unsorted keys, non-default dtypes and numpy scalars.
    return {
        "positions": np.array([[0.5, 1.5, 2.5], [3.25, 4.0, 5.0]], dtype="<f4"),
        "numbers": np.array([6, 8], dtype="<i4"),
        "arrays.species": np.array(["C", "O"]),
        "arrays.fixed": np.array([True, False]),
        "arrays.tags": np.array([[1, 2], [3, 4]], dtype="<u2"),
        "info.step": np.int64(42),
        "info.temperature": np.float64(300.5),
        "info.label": "carbon monoxide \u00e9",
        "info.flag": np.bool_(True),
        "info.nothing": None,
        "calc.forces": np.array([[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]]),
        "calc.energy": -3.5,
        "cell": np.zeros((3, 3)),
        "pbc": np.array([False, False, False]),
    }


def main():
    mode = sys.argv[1]
    if mode == "describe":
        with open(sys.argv[2], "rb") as f:
            frame = msgpack.unpackb(f.read(), object_hook=msgpack_numpy.decode)
        print(json.dumps(describe(frame)))
    elif mode == "golden":
        sys.stdout.buffer.write(msgpack.packb(golden_frame(), default=msgpack_numpy.encode))
    elif mode == "write":
        frame = varied_frame()
        with open(sys.argv[2], "wb") as f:
            f.write(msgpack.packb(frame, default=msgpack_numpy.encode))
        # Describe what a reader must get back (numpy scalars as plain values).
        print(json.dumps(describe(frame)))
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
