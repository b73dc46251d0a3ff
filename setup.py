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
    # the status service's page (kgateway.services.status)
    package_data={"kgateway.services": ["status_page/*"]},
    install_requires=[
        "twisted[tls]>=24.7",
        "autobahn>=24.4",
        "zope.interface>=6",
        "pyOpenSSL>=24",
        "service-identity>=24",
        "defusedxml>=0.7",
        # kgateway.auth: password hashes, bearer tokens, the LDAP client (Twisted's)
        "argon2-cffi>=23.1",
        "PyJWT[crypto]>=2.8",
        "ldaptor>=21.2",
        # kgateway.services.metrics: the exposition formats, process metrics
        "prometheus-client>=0.20",
        # kgateway certs: the private CA and certificates
        "cryptography>=42",
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout", "hypothesis", "pika", "stomp.py>=8.1",
                 "websocket-client", "websockets", "mypy", "mypy-zope", "ruff"],
        # make bench: the relay benchmark's peer (a process of its own) and the plots
        "bench": ["websockify==0.13.0", "matplotlib"],
    },
    entry_points={"console_scripts": ["kgateway = kgateway.cli:main"]},
)
