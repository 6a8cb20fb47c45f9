# Where each installed file lands: the Qubes layout (same paths as the
# original qrexec packages, so scripts and policies that name them work).
# Three install components, one Debian package each (docs/packaging.md):
#   vm   - what runs inside a qube (agent, qrexec-client-vm, fork server)
#   dom0 - the admin side (per-domain daemon, qrexec-client, policy tools)
#   host - the embedded host that runs domains as bubblewrap sandboxes
# Adding a program to a package is one qrexec_install_program() line below.
include(GNUInstallDirs)

set(QREXEC_PACKAGE_CONTACT "qrexec-cpp maintainers <qrexec-cpp@localhost>" CACHE STRING
    "Maintainer of the Debian packages (control file and changelog)")

set(QREXEC_LIBEXEC_DIR lib/qubes)        # /usr/lib/qubes
set(QREXEC_RPC_DIR /etc/qubes-rpc)
set(QREXEC_POLICY_DIR /etc/qubes/policy.d)
set(QREXEC_RPC_CONFIG_DIR /etc/qubes/rpc-config)
set(QREXEC_UNIT_DIR lib/systemd/system)  # /usr/lib/systemd/system
set(QREXEC_TMPFILES_DIR lib/tmpfiles.d)

# qrexec_install_program(TARGET COMPONENT DIR): the program, and its man page
# man/TARGET.1 when there is one (installed gzipped: the build writes
# build/man/TARGET.1.gz, man/CMakeLists.txt). Silently skips targets not
# built in this tree (a component whose sources are on another branch).
function(qrexec_install_program target component dir)
  if(NOT TARGET ${target})
    return()
  endif()
  install(TARGETS ${target} RUNTIME DESTINATION ${dir} COMPONENT ${component})
  if(EXISTS ${CMAKE_SOURCE_DIR}/man/${target}.1)
    install(FILES ${CMAKE_BINARY_DIR}/man/${target}.1.gz
            DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT ${component})
  endif()
endfunction()

# --- vm ---
qrexec_install_program(qrexec-agent         vm   ${QREXEC_LIBEXEC_DIR})
qrexec_install_program(qrexec-client-vm     vm   bin)
qrexec_install_program(qrexec-fork-server   vm   bin)
qrexec_install_program(qrexec-pam-session   vm   ${QREXEC_LIBEXEC_DIR})
qrexec_install_program(qrexec-policy-agent  vm   bin)
# --- dom0 ---
qrexec_install_program(qrexec-daemon        dom0 sbin)
qrexec_install_program(qrexec-client        dom0 bin)
qrexec_install_program(qrexec-policy-daemon dom0 bin)
qrexec_install_program(qrexec-policy-exec   dom0 bin)
qrexec_install_program(qrexec-policy-graph  dom0 bin)
qrexec_install_program(qubes-policy-lint    dom0 bin)
qrexec_install_program(qubes-policy-admin   dom0 bin)
qrexec_install_program(qubes-policy         dom0 bin)
qrexec_install_program(qubes-policy-editor  dom0 bin)
qrexec_install_program(qrexec-policy-restore dom0 bin)
qrexec_install_program(qrexec-legacy-convert dom0 bin)
# --- host ---
qrexec_install_program(qrexec-host          host bin)
qrexec_install_program(qrexec-sandbox-init  host ${QREXEC_LIBEXEC_DIR})

set(dist ${CMAKE_SOURCE_DIR}/dist)

# VM side: services every qube offers, rpc-config docs, agent unit.
install(PROGRAMS ${dist}/qubes-rpc/qubes.WaitForSession
        DESTINATION ${QREXEC_RPC_DIR} COMPONENT vm)
# policy.Ask / policy.Notify are socket services: links to the policy agent's
# socket, which the agent connects to instead of executing a file.
foreach(service policy.Ask policy.Notify)
  install(CODE "file(MAKE_DIRECTORY \"\$ENV{DESTDIR}${QREXEC_RPC_DIR}\")
    file(CREATE_LINK /run/qubes/policy-agent.sock
         \"\$ENV{DESTDIR}${QREXEC_RPC_DIR}/${service}\" SYMBOLIC)"
    COMPONENT vm)
endforeach()
install(FILES ${dist}/rpc-config/README DESTINATION ${QREXEC_RPC_CONFIG_DIR} COMPONENT vm)
# The PAM stack qrexec-pam-session opens sessions of (docs/pam.md); only
# with the helper that uses it.
if(TARGET qrexec-pam-session)
  install(FILES ${dist}/pam/qrexec DESTINATION /etc/pam.d COMPONENT vm)
endif()
install(FILES ${dist}/systemd/qubes-qrexec-agent.service
        DESTINATION ${QREXEC_UNIT_DIR} COMPONENT vm)
install(FILES ${dist}/systemd/qrexec-volatile-config.conf
        DESTINATION ${QREXEC_TMPFILES_DIR} COMPONENT vm)

# dom0 side: default policy, dom0 services, policy daemon and daemon units.
install(FILES ${dist}/policy.d/35-compat.policy
              ${dist}/policy.d/90-admin-policy-default.policy
              ${dist}/policy.d/README
        DESTINATION ${QREXEC_POLICY_DIR} COMPONENT dom0)
install(FILES ${dist}/policy.d/include/admin-policy-ro
              ${dist}/policy.d/include/admin-policy-rwx
        DESTINATION ${QREXEC_POLICY_DIR}/include COMPONENT dom0)
# The R4.0 policy directory, shipped empty: !compat-4.0 in 35-compat.policy
# fails the whole policy load (denies every call) when it is missing.
install(DIRECTORY DESTINATION ${QREXEC_RPC_DIR}/policy COMPONENT dom0)
install(DIRECTORY DESTINATION ${QREXEC_RPC_DIR}/policy/include COMPONENT dom0)
# The policy admin API: nine dom0 services, each a link to qubes-policy-admin,
# which learns the service it runs as from QREXEC_SERVICE_FULL_NAME (set by
# qrexec for every service), not from argv[0].
foreach(service policy.List policy.Get policy.Replace policy.Remove
                policy.include.List policy.include.Get policy.include.Replace
                policy.include.Remove policy.GetFiles)
  install(CODE "file(MAKE_DIRECTORY \"\$ENV{DESTDIR}${QREXEC_RPC_DIR}\")
    file(CREATE_LINK /usr/bin/qubes-policy-admin
         \"\$ENV{DESTDIR}${QREXEC_RPC_DIR}/${service}\" SYMBOLIC)"
    COMPONENT dom0)
endforeach()
install(PROGRAMS ${dist}/qubes-rpc-dom0/policy.RegisterArgument
        DESTINATION ${QREXEC_RPC_DIR} COMPONENT dom0)
install(FILES ${dist}/systemd/qubes-qrexec-policy-daemon.service
              ${dist}/systemd/qubes-qrexec-daemon@.service
        DESTINATION ${QREXEC_UNIT_DIR} COMPONENT dom0)
install(FILES ${dist}/systemd/qrexec.conf
        DESTINATION ${QREXEC_TMPFILES_DIR} COMPONENT dom0)

# host: the embedded host's unit.
install(FILES ${dist}/systemd/qrexec-host.service
        DESTINATION ${QREXEC_UNIT_DIR} COMPONENT host)

# Every package: /usr/share/doc/PACKAGE/copyright (machine-readable, one
# text for all three) and changelog.gz (Debian changelog format; the
# packages are native, so no changelog.Debian.gz), and lintian overrides for
# what is deliberate (docs/packaging.md, "Lintian").
set(doc_build_dir ${CMAKE_BINARY_DIR}/deb-doc)
configure_file(${dist}/doc/changelog.in ${doc_build_dir}/changelog @ONLY)
add_custom_command(OUTPUT ${doc_build_dir}/changelog.gz
  COMMAND sh -c "gzip -9n -c ${doc_build_dir}/changelog > ${doc_build_dir}/changelog.gz"
  DEPENDS ${doc_build_dir}/changelog VERBATIM)
add_custom_target(package-docs ALL DEPENDS ${doc_build_dir}/changelog.gz)
foreach(component vm dom0 host)
  install(FILES ${dist}/doc/copyright ${doc_build_dir}/changelog.gz
          DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/qrexec-cpp-${component}
          COMPONENT ${component})
  if(EXISTS ${dist}/lintian/qrexec-cpp-${component})
    install(FILES ${dist}/lintian/qrexec-cpp-${component}
            DESTINATION share/lintian/overrides COMPONENT ${component})
  endif()
endforeach()
