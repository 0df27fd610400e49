# shellcheck shell=bash
# Lua from Debian, for the Argo CD health script (charts/mailsec-operator/files/
# argocd-health-maildomain.lua) in tests/gitops_health.rs. Argo CD runs gopher-lua (Lua 5.1
# semantics), so the test runs the script under both lua5.1 and lua5.4: one script in their
# common subset. Sourced by scripts/tools.sh: debian_packages comes from there.
debian_packages lua5.4 lua5.1
