# The paper's DePT+ATPrompt base-to-novel settings per dataset (sourced); EPO / NCTX / WEIGHT in the environment
# win. ImageNet is not in the paper's table; it gets the original script's NCTX 2 and weight 0.7.
atp_settings() {
    local nctx=4 weight=0.7
    case $1 in
        caltech101 | dtd) weight=0.6 ;;
        ucf101) weight=0.5 ;;
        stanford_cars) nctx=2 weight=0.6 ;;
        oxford_pets | imagenet) nctx=2 ;;
    esac
    EPO=${EPO:-10}
    NCTX=${NCTX:-$nctx}
    WEIGHT=${WEIGHT:-$weight}
}
