"""Installs svcctl.py as the console script `svcctl`."""
import re

from setuptools import setup

with open("svcctl.py") as handle:
    VERSION = re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M).group(1)

setup(
    name="svcctl",
    version=VERSION,
    description="systemctl for a whole cluster, on ClusterShell",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    py_modules=["svcctl"],
    python_requires=">=3.9",
    install_requires=["ClusterShell>=1.9", "PyYAML>=5.1"],
    extras_require={"test": ["pytest>=7", "hypothesis>=6"]},
    entry_points={"console_scripts": ["svcctl = svcctl:console_main"]},
    license="LGPL-2.1-or-later",
    classifiers=["Environment :: Console", "Topic :: System :: Clustering",
                 "Programming Language :: Python :: 3"],
)
