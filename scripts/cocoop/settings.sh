# The paper's CoCoOp+ATPrompt base-to-novel settings per dataset (sourced); EPO / NCTX in the environment win.
atp_settings() {
    local nctx=2
    case $1 in
        ucf101) nctx=4 ;;
        stanford_cars | oxford_flowers | eurosat) nctx=6 ;;
    esac
    EPO=${EPO:-10}
    NCTX=${NCTX:-$nctx}
}
