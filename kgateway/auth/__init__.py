"""Authentication: who a client is, on twisted.cred, configured the Kaazing way.

The picture::

    <service> --<realm-name>--> realm (one Portal per <security><realm>)
                                  |
    Authorization header --credentials.parse_authorization--> UsernamePassword | BearerToken
                                  |
                Portal.login(credentials, None, IPrincipal)
                                  |
                ChainChecker: the realm's login modules in order, JAAS flags
                  file  (PasswordFileChecker: argon2 hashes in a text file)
                  ldap  (LdapChecker: bind as the user, roles from groups)
                  jwt   (JwtChecker: signed bearer tokens)
                                  |   each proves an Identity(name, roles, attributes)
                                  v
                Realm.requestAvatar -> Principal(name, roles, attributes)  (IPrincipal)

What lives here:

- ``principal``: ``IPrincipal``, ``Principal`` (the avatar), ``Identity`` (the avatar id
  checkers return, carrying the roles; why: see its docstring), ``Realm``;
- ``credentials``: ``IToken``/``BearerToken`` and the ``Authorization`` header parsers;
- ``settings``: frozen settings, the Kaazing option names, what is supported;
- ``filemodule``, ``ldapmodule``, ``jwtmodule``: one cred checker per login module type
  (``filemodule.main`` is ``kgateway passwd``);
- ``portal``: ``ChainChecker`` and ``build_portal(realm_settings, reactor)``.

Imports: Twisted (cred, internet, logger), zope.interface, argon2-cffi, PyJWT +
cryptography, ldaptor, the standard library; from kgateway only ``kgateway.auth`` itself
(and, if ever needed, ``kgateway.interfaces``). Nothing here knows HTTP requests,
services or the XML: the accept path and the configuration parser use it, not the reverse.
Importing the package imports nothing heavy; import the submodules.

From Kaazing's configuration to the settings (``settings.login_module_settings`` and
``settings.realm_settings``)::

    <security>
      <realm>
        <name>demo</name>                         RealmSettings.name (the Realm's name)
        <description>..</description>             RealmSettings.description
        <authentication>
          <http-challenge-scheme>Basic            RealmSettings.challenge_scheme:
                                                    Basic | Application Basic | Bearer
          <login-modules>
            <login-module>                        LoginModuleSettings, in order
              <type>file</type>                   file | ldap | jwt
              <success>required</success>         required | requisite | sufficient | optional
              <options>                           mapping element name -> text:
                <file>users.passwd</file>           FileModuleSettings(path)
                <userProvider>ldap://h/ou=..      LdapModuleSettings (JDK LdapLoginModule
                <authIdentity>uid={USERNAME},..     names where they exist, {USERNAME})
                <issuer>, <audience>, <keyFile>   JwtModuleSettings
    <service> ... <realm-name>demo</realm-name>  the portal the service's accepts use
      <authorization-constraint>
        <require-role>ops</require-role>          the accept path checks Principal.has_role

Not supported, and to be reported as configuration errors by the caller (the functions
raise ``AuthConfigError``): login-module types ``kerberos5``, ``gss``, ``jndi``,
``keystore``, ``custom`` and anything else outside ``settings.SUPPORTED_TYPES``; schemes
``Negotiate``, ``Application Negotiate``, ``Application Token`` (outside
``settings.SUPPORTED_SCHEMES``); any unknown option. ``<http-header>``,
``<http-query-parameter>``, ``<http-cookie>``, ``<authorization-mode>``,
``<session-timeout>`` and ``<user-principal-class>`` are not handled here: the parser
should refuse them too until the accept path implements them.
"""
