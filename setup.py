from setuptools import find_packages, setup

setup(
    name="kgateway",
    version="0.1.0",
    description="A WebSocket gateway for message brokers and TCP services, Kaazing-style",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    # twisted.plugins is a namespace shared with Twisted: list it, never add __init__.py.
    packages=find_packages(include=["kgateway", "kgateway.*"]) + ["twisted.plugins"],
    install_requires=[
        "twisted[tls]>=24.7",
        "autobahn>=24.4",
        "zope.interface>=6",
        "pyOpenSSL>=24",
        "service-identity>=24",
        "defusedxml>=0.7",
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout", "hypothesis", "pika", "stomp.py>=8.1",
                 "websocket-client", "websockets", "mypy", "mypy-zope", "ruff", "cryptography"],
        # make bench: the relay benchmark's peer (a process of its own) and the plots
        "bench": ["websockify==0.13.0", "matplotlib"],
    },
    entry_points={"console_scripts": ["kgateway = kgateway.cli:main"]},
)
