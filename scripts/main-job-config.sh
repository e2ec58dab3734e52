# Sourced by the scripts that run the main job and watch it from outside
# (scripts/soak.sh, bench/output_latency.sh): builds the engine if needed and
# writes a copy of a configuration with its own state directory and admin
# port, and no dashboard.
#   main_job_config CONFIG WORK PORT   -> writes WORK/config.yaml
binary=build/release/src/cli/crmstream
[ -x "$binary" ] || { scripts/install-deps.sh && scripts/build.sh release; }

main_job_config() {
  sed -e "s|^state_dir: .*|state_dir: $2/state|" -e "s|^metrics_port: .*|metrics_port: $3|" \
      -e "s|^dashboard_port: .*|dashboard_port: 0|" "$1" > "$2/config.yaml"
}
